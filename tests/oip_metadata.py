"""The model metadata `parameters` of the Open Inference Protocol's gRPC message (field 6),
read from tritonclient's answer: Triton's message does not declare the field, and its
client keeps it as an unknown field."""

from __future__ import annotations

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from tritonclient.grpc import service_pb2


def oip_parameters(metadata: service_pb2.ModelMetadataResponse) -> dict:
    """Field 6 of a ModelMetadataResponse, which Triton's message does not declare (its
    client keeps it as an unknown field): read with a message that declares it as the
    Open Inference Protocol does."""
    pool = descriptor_pool.Default()
    try:
        descriptor = pool.FindMessageTypeByName("oip_test.Metadata")
    except KeyError:
        proto = descriptor_pb2.FileDescriptorProto(
            name="oip_test_metadata.proto",
            package="oip_test",
            syntax="proto3",
            dependency=[service_pb2.DESCRIPTOR.name],
        )
        message = proto.message_type.add(name="Metadata")
        entry = message.nested_type.add(name="ParametersEntry")
        entry.options.map_entry = True
        field = descriptor_pb2.FieldDescriptorProto
        entry.field.add(name="key", number=1, type=field.TYPE_STRING, label=field.LABEL_OPTIONAL)
        entry.field.add(
            name="value",
            number=2,
            type=field.TYPE_MESSAGE,
            type_name=".inference.InferParameter",
            label=field.LABEL_OPTIONAL,
        )
        message.field.add(
            name="parameters",
            number=6,
            type=field.TYPE_MESSAGE,
            type_name=".oip_test.Metadata.ParametersEntry",
            label=field.LABEL_REPEATED,
        )
        pool.Add(proto)
        descriptor = pool.FindMessageTypeByName("oip_test.Metadata")
    parsed = message_factory.GetMessageClass(descriptor).FromString(metadata.SerializeToString())
    return {
        key: getattr(value, value.WhichOneof("parameter_choice"))
        for key, value in parsed.parameters.items()
    }
