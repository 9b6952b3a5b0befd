"""portside.engine.registry"""
