"""Pipeline stages, one module per stage. Modules import cheaply; models load in ``setup()``."""
