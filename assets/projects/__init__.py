"""Projects declared in YAML, one folder each (``assets/components.py``): ``dg check defs``
validates them, ``dg list defs`` lists what they build. Empty by default: the environment's
project (``AMPLITUDE_*``, ``MIXPANEL_*``) needs no file here."""
