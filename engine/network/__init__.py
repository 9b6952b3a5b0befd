"""portside.engine.network"""
