"""portside.engine.image"""
