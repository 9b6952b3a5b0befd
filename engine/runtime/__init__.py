"""portside.engine.runtime"""
