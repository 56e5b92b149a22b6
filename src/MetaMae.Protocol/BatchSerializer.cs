using System.Runtime.InteropServices;
using System.Runtime.Serialization;
using System.Text;
using Akka.Actor;
using Akka.Serialization;

namespace MetaMae.Protocol;

/// <summary>
/// Binary serializer for <see cref="Batch"/>: a fixed header then the raw little-endian arrays, so a batch costs its
/// payload on the wire (Akka's default JSON serializer makes a 1 MB float[] about 4.7 MB). Bound in
/// <see cref="Hocon"/>; batches crossing nodes also need Akka.Remote's maximum-frame-size raised above their size.
/// </summary>
public sealed class BatchSerializer(ExtendedActorSystem system) : SerializerWithStringManifest(system)
{
    public const int SerializerId = 731_001;
    private const string BatchManifest = "B1";

    /// <summary>HOCON that registers the serializer and binds <see cref="Batch"/> to it.</summary>
    public static readonly string Hocon = $$"""
        akka.actor {
          serializers.metamae-batch = "{{typeof(BatchSerializer).AssemblyQualifiedName}}"
          serialization-bindings { "{{typeof(Batch).FullName}}, {{typeof(Batch).Assembly.GetName().Name}}" = metamae-batch }
          serialization-identifiers { "{{typeof(BatchSerializer).FullName}}, {{typeof(BatchSerializer).Assembly.GetName().Name}}" = {{SerializerId}} }
        }
        """;

    public override int Identifier => SerializerId;

    public override string Manifest(object o) => o is Batch ? BatchManifest : throw new ArgumentException($"cannot serialize {o.GetType()}");

    public override byte[] ToBinary(object obj)
    {
        var b = (Batch)obj;
        using var stream = new MemoryStream((int)Math.Min(int.MaxValue, b.PayloadBytes + 128));
        using var w = new BinaryWriter(stream, Encoding.UTF8, leaveOpen: true);
        w.Write(b.Size);
        w.Write(b.SampleShape.Length);
        foreach (var d in b.SampleShape) w.Write(d);
        w.Write(b.LabelsPerSample);
        w.Write(b.End.Epoch);
        w.Write(b.End.Offset);
        w.Write(b.Sequence);
        WriteArray(w, b.Values);
        WriteArray(w, b.Ids);
        WriteArray(w, b.Labels);
        w.Flush();
        return stream.ToArray();
    }

    public override object FromBinary(byte[] bytes, string manifest)
    {
        if (manifest != BatchManifest) throw new SerializationException($"unknown manifest '{manifest}' for {nameof(BatchSerializer)}");
        using var r = new BinaryReader(new MemoryStream(bytes));
        int size = r.ReadInt32();
        var shape = new int[r.ReadInt32()];
        for (int i = 0; i < shape.Length; i++) shape[i] = r.ReadInt32();
        int labelsPer = r.ReadInt32();
        var end = new StreamPosition(r.ReadInt64(), r.ReadInt64());
        long sequence = r.ReadInt64();
        var values = ReadArray<float>(r);
        var ids = ReadArray<long>(r);
        var labels = ReadArray<float>(r) ?? throw new SerializationException("batch without labels");
        return new Batch(size, shape, values, ids, labels, labelsPer, end, sequence);
    }

    private static void WriteArray<T>(BinaryWriter w, T[]? array) where T : unmanaged
    {
        w.Write(array?.Length ?? -1);
        if (array is not null) w.Write(MemoryMarshal.AsBytes(array.AsSpan()));
    }

    private static T[]? ReadArray<T>(BinaryReader r) where T : unmanaged
    {
        int n = r.ReadInt32();
        if (n < 0) return null;
        var result = new T[n];
        var bytes = MemoryMarshal.AsBytes(result.AsSpan());
        if (r.Read(bytes) != bytes.Length) throw new SerializationException("truncated batch");
        return result;
    }
}
