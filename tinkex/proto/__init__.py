"""The 0.38 dialect's protobuf messages: ``tinker_public.proto`` and the module protoc generated from it.

``tinker_public_pb2`` is generated code, committed; tests/tinkex/wire/test_proto_fresh.py checks it matches the .proto.
"""
