"""MixNN: a model spread over a cascade of layer servers, talking in fixed-size onion-encrypted packets.

Roles: ``node`` (an untrusted layer server), ``designer`` (the client who owns the model and data),
``pool`` (the server directory). The packet format lives in ``packet``/``routing``/``keys``, every size in
``constants``. See docs/cascade.md.
"""

from veil.cascade.designer import ByzantineDetected, Cascade, CrashDetected, Designer, TrainResult
from veil.cascade.models import ModelSpec, load_spec
from veil.cascade.node import Node
from veil.cascade.packet import Hop, PacketRejected, Peeler, build_packet

__all__ = ["ByzantineDetected", "Cascade", "CrashDetected", "Designer", "Hop", "ModelSpec", "Node",
           "PacketRejected", "Peeler", "TrainResult", "build_packet", "load_spec"]
