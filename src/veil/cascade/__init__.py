"""MixNN: a model spread over a cascade of layer servers, talking in fixed-size onion-encrypted packets.

Roles: ``node`` (an untrusted layer server), the designer (the client who owns the model and data, split into
``inbox``, ``selection``, ``deployment``, ``trainer`` and ``recovery`` behind ``designer.Designer``), ``pool``
(the server directory). Packets travel over an injected ``transport.Transport`` (ZeroMQ by default, gRPC).
The packet format lives in ``packet``/``routing``/``keys``, every size in ``constants``. See docs/cascade.md.
"""

from veil.cascade.designer import ByzantineDetected, Cascade, CrashDetected, Designer, TrainResult
from veil.cascade.models import ModelSpec, load_spec
from veil.cascade.node import Node
from veil.cascade.packet import Hop, PacketRejected, Peeler, build_packet
from veil.cascade.testing import LoopbackNode, loopback_node
from veil.cascade.transport import Transport

__all__ = ["ByzantineDetected", "Cascade", "CrashDetected", "Designer", "Hop", "LoopbackNode", "ModelSpec", "Node",
           "PacketRejected", "Peeler", "TrainResult", "Transport", "build_packet", "load_spec", "loopback_node"]
