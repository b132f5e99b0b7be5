"""forgettable"""
