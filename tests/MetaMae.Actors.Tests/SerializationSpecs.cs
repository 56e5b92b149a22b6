using Akka.Serialization;
using MetaMae.Protocol;

namespace MetaMae.Actors.Tests;

public sealed class SerializationSpecs : MetaMaeTestKit
{
    [Fact]
    public void Batches_serialize_to_their_payload_size_and_back()
    {
        var values = Enumerable.Range(0, 262_144).Select(i => i * 0.5f).ToArray(); // 1 MB of floats
        var batch = new Batch(64, [1, 64, 64], values, null, Enumerable.Range(0, 64).Select(i => (float)(i % 10)).ToArray(), 1,
            new StreamPosition(3, 1024), 17);
        var serializer = Sys.Serialization.FindSerializerFor(batch);
        Assert.IsType<BatchSerializer>(serializer);
        var bytes = serializer.ToBinary(batch);
        Assert.InRange(bytes.Length, batch.PayloadBytes, batch.PayloadBytes + 128);
        var back = (Batch)Sys.Serialization.Deserialize(bytes, serializer.Identifier, Serialization.ManifestFor(serializer, batch));
        Assert.Equal(batch.Values, back.Values);
        Assert.Equal(batch.Labels, back.Labels);
        Assert.Equal(batch.SampleShape, back.SampleShape);
        Assert.Equal((batch.Size, batch.End, batch.Sequence, batch.LabelsPerSample), (back.Size, back.End, back.Sequence, back.LabelsPerSample));
        Assert.Null(back.Ids);

        var tokens = batch with { Values = null, Ids = Enumerable.Range(0, 64 * 128).Select(i => (long)(i % 26)).ToArray(), SampleShape = [128] };
        var tokenBack = (Batch)Sys.Serialization.Deserialize(serializer.ToBinary(tokens), serializer.Identifier, "B1");
        Assert.Equal(tokens.Ids, tokenBack.Ids);
    }
}
