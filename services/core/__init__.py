"""The tracker's protocol, free of I/O.

Everything here takes bytes or plain values and returns bytes or frozen values: bencode, the
HTTP (BEP 3/7/23/24/31/48) and UDP (BEP 15/41) wire codecs, the peer and request model, and the
UDP connection-ID rule. Nothing here opens a socket or imports a framework, Redis or Kafka
(tests/unit/test_core_purity.py checks), so every rule can be tested and fuzzed with bytes.
"""
