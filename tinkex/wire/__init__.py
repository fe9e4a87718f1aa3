"""Wire-format codecs that are not JSON: the 0.38 dialect's protobuf bodies (:mod:`.protobuf_bodies`)."""
