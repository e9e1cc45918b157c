"""Generated protobuf code; see the .proto files beside it."""
