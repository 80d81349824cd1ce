"""The Textual app (wizard, live dashboard, checkpoint browser) over the engine.

It imports ``engine``; the engine never imports this package.
"""
