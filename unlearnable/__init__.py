"""unlearnable"""
