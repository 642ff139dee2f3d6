"""Built-in preset documents (``*.json``, package data), read by ``taylorglo.presets.registry``."""
