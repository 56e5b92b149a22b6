using System.Runtime.InteropServices;
using System.Runtime.Serialization;
using System.Text;
using System.Text.Json;
using System.Text.Json.Serialization;
using Akka.Actor;
using Akka.Serialization;

namespace MetaMae.Protocol;

/// <summary>
/// The one serializer of every <see cref="IMetaMaeMessage"/>. A <see cref="Batch"/> (alone or inside a
/// <see cref="FeedBatch"/>) is a fixed header then its raw little-endian arrays, so it costs its payload on the wire
/// (Akka's default JSON serializer makes a 1 MB float[] about 4.7 MB). Control messages are UTF-8 JSON named by a
/// manifest of their type name, small and readable in a capture. Bound through the marker interface in
/// <see cref="Hocon"/> (or Akka.Hosting's WithCustomSerializer); batches crossing nodes also need Akka.Remote's
/// maximum-frame-size above their size.
/// </summary>
public sealed class MetaMaeSerializer : SerializerWithStringManifest
{
    public const int SerializerId = 731_001;
    private const string BatchManifest = "B1";
    private const string FeedBatchManifest = "FB1";
    private const string GradientChunkManifest = "GC1";
    private const int ChunkHeaderBytes = 4 * 4 + 8 + 4 + 4 + 1;

    /// <summary>HOCON that registers the serializer and binds the marker interface to it.</summary>
    public static readonly string Hocon = $$"""
        akka.actor {
          serializers.metamae = "{{typeof(MetaMaeSerializer).AssemblyQualifiedName}}"
          serialization-bindings { "{{typeof(IMetaMaeMessage).FullName}}, {{typeof(IMetaMaeMessage).Assembly.GetName().Name}}" = metamae }
          serialization-identifiers { "{{typeof(MetaMaeSerializer).FullName}}, {{typeof(MetaMaeSerializer).Assembly.GetName().Name}}" = {{SerializerId}} }
        }
        """;

    /// <summary>Per system: actor references travel as their paths, stream references through Akka's own serializer.</summary>
    private readonly JsonSerializerOptions json;

    public MetaMaeSerializer(ExtendedActorSystem system) : base(system)
    {
        json = new JsonSerializerOptions
        {
            Converters = { new JsonStringEnumConverter(), new ActorRefConverter(system), new SourceRefConverter(system) },
            NumberHandling = JsonNumberHandling.AllowNamedFloatingPointLiterals,
        };
    }

    /// <summary>Control messages by manifest: every concrete message type of this assembly.</summary>
    private static readonly Dictionary<string, Type> Types = typeof(IMetaMaeMessage).Assembly.GetTypes()
        .Where(t => typeof(IMetaMaeMessage).IsAssignableFrom(t) && t is { IsAbstract: false, IsInterface: false })
        .ToDictionary(t => t.Name, t => t);

    /// <summary>The message types this serializer knows (for specs).</summary>
    public static IReadOnlyCollection<Type> MessageTypes => Types.Values;

    public override int Identifier => SerializerId;

    public override string Manifest(object o) => o switch
    {
        Batch => BatchManifest,
        FeedBatch => FeedBatchManifest,
        GradientChunk => GradientChunkManifest,
        IMetaMaeMessage m when Types.ContainsKey(m.GetType().Name) => m.GetType().Name,
        _ => throw new ArgumentException($"{nameof(MetaMaeSerializer)} cannot serialize {o.GetType()}"),
    };

    public override byte[] ToBinary(object obj)
    {
        switch (obj)
        {
            case Batch b:
                return WriteBatch(b, null);
            case FeedBatch f:
                return WriteBatch(f.Batch, f.Generation);
            case GradientChunk c:
                return WriteChunk(c);
            default:
                Manifest(obj);
                return JsonSerializer.SerializeToUtf8Bytes(obj, obj.GetType(), json);
        }
    }

    public override object FromBinary(byte[] bytes, string manifest)
    {
        if (manifest == BatchManifest) return ReadBatch(bytes, withGeneration: false).Batch;
        if (manifest == FeedBatchManifest)
        {
            var (generation, batch) = ReadBatch(bytes, withGeneration: true);
            return new FeedBatch(generation, batch);
        }
        if (manifest == GradientChunkManifest) return ReadChunk(bytes);
        if (!Types.TryGetValue(manifest, out var type)) throw new SerializationException($"unknown manifest '{manifest}' for {nameof(MetaMaeSerializer)}");
        return JsonSerializer.Deserialize(bytes, type, json) ?? throw new SerializationException($"empty {manifest}");
    }

    private sealed class ActorRefConverter(ExtendedActorSystem system) : JsonConverter<IActorRef>
    {
        public override IActorRef Read(ref Utf8JsonReader reader, Type typeToConvert, JsonSerializerOptions options)
        {
            var path = reader.GetString();
            return string.IsNullOrEmpty(path) ? ActorRefs.Nobody : system.Provider.ResolveActorRef(path);
        }

        public override void Write(Utf8JsonWriter writer, IActorRef value, JsonSerializerOptions options) =>
            writer.WriteStringValue(Akka.Serialization.Serialization.SerializedActorPath(value));
    }

    /// <summary>A stream reference is serialized by Akka.Streams' serializer and carried as id, manifest and bytes.</summary>
    private sealed class SourceRefConverter(ExtendedActorSystem system) : JsonConverter<Akka.Streams.ISourceRef<Batch>>
    {
        private sealed record Wrapped(int Serializer, string Manifest, byte[] Bytes);

        public override Akka.Streams.ISourceRef<Batch> Read(ref Utf8JsonReader reader, Type typeToConvert, JsonSerializerOptions options)
        {
            var w = JsonSerializer.Deserialize<Wrapped>(ref reader) ?? throw new SerializationException("empty stream reference");
            return (Akka.Streams.ISourceRef<Batch>)system.Serialization.Deserialize(w.Bytes, w.Serializer, w.Manifest);
        }

        public override void Write(Utf8JsonWriter writer, Akka.Streams.ISourceRef<Batch> value, JsonSerializerOptions options)
        {
            var serializer = system.Serialization.FindSerializerFor(value);
            var manifest = Akka.Serialization.Serialization.ManifestFor(serializer, value);
            JsonSerializer.Serialize(writer, new Wrapped(serializer.Identifier, manifest, serializer.ToBinary(value)));
        }
    }

    private static byte[] WriteBatch(Batch b, int? generation)
    {
        using var stream = new MemoryStream((int)Math.Min(int.MaxValue, b.PayloadBytes + 128));
        using var w = new BinaryWriter(stream, Encoding.UTF8, leaveOpen: true);
        if (generation is { } g) w.Write(g);
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

    private static (int Generation, Batch Batch) ReadBatch(byte[] bytes, bool withGeneration)
    {
        using var r = new BinaryReader(new MemoryStream(bytes));
        int generation = withGeneration ? r.ReadInt32() : 0;
        int size = r.ReadInt32();
        var shape = new int[r.ReadInt32()];
        for (int i = 0; i < shape.Length; i++) shape[i] = r.ReadInt32();
        int labelsPer = r.ReadInt32();
        var end = new StreamPosition(r.ReadInt64(), r.ReadInt64());
        long sequence = r.ReadInt64();
        var values = ReadArray<float>(r);
        var ids = ReadArray<long>(r);
        var labels = ReadArray<float>(r) ?? throw new SerializationException("batch without labels");
        return (generation, new Batch(size, shape, values, ids, labels, labelsPer, end, sequence));
    }

    /// <summary>A fixed header, then the payload copied once from the array (no per-element work).</summary>
    private static byte[] WriteChunk(GradientChunk c)
    {
        ReadOnlySpan<byte> payload = c.Half is { } half ? MemoryMarshal.AsBytes(half.AsSpan(0, c.Count)) : MemoryMarshal.AsBytes(c.Values.AsSpan(0, c.Count));
        var bytes = new byte[ChunkHeaderBytes + payload.Length];
        var span = bytes.AsSpan();
        BitConverter.TryWriteBytes(span[0..], c.Group);
        BitConverter.TryWriteBytes(span[4..], c.Step);
        BitConverter.TryWriteBytes(span[8..], c.Index);
        BitConverter.TryWriteBytes(span[12..], c.Offset);
        BitConverter.TryWriteBytes(span[16..], c.Op);
        BitConverter.TryWriteBytes(span[24..], c.Count);
        BitConverter.TryWriteBytes(span[28..], payload.Length);
        span[32] = c.Half is null ? (byte)0 : (byte)1;
        payload.CopyTo(span[ChunkHeaderBytes..]);
        return bytes;
    }

    private static GradientChunk ReadChunk(byte[] bytes)
    {
        var span = bytes.AsSpan();
        if (span.Length < ChunkHeaderBytes) throw new SerializationException($"gradient chunk of {span.Length} bytes is shorter than its header");
        int count = BitConverter.ToInt32(span[24..]), length = BitConverter.ToInt32(span[28..]);
        bool half = span[32] == 1;
        if (count < 0 || length != count * (half ? 2 : 4) || span.Length != ChunkHeaderBytes + length)
            throw new SerializationException($"gradient chunk of {span.Length} bytes does not hold {count} {(half ? "bf16" : "fp32")} values");
        var payload = span[ChunkHeaderBytes..];
        float[]? values = half ? null : MemoryMarshal.Cast<byte, float>(payload).ToArray();
        ushort[]? halves = half ? MemoryMarshal.Cast<byte, ushort>(payload).ToArray() : null;
        return new GradientChunk(BitConverter.ToInt32(span[0..]), BitConverter.ToInt64(span[16..]), BitConverter.ToInt32(span[4..]),
            BitConverter.ToInt32(span[8..]), BitConverter.ToInt32(span[12..]), count, values, halves);
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
