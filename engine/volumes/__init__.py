"""portside.engine.volumes"""
