"""Serving backend drivers: the one small interface Charter's deploy tasks drive (``backend``), and
its implementations (MLServer, KServe). Free of Django: a driver gets plain values and a verified
local artifact file, and raises ``ServingError`` with a code and a sentence."""
