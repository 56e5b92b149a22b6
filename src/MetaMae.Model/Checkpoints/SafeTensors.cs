using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using static TorchSharp.torch;

namespace MetaMae.Model.Checkpoints;

/// <summary>
/// The safetensors format (an 8-byte header length, a JSON header of name -> dtype/shape/offsets, raw little-endian
/// data): readable by the Python <c>safetensors</c> package, so weights move to and from PyTorch with their names.
/// </summary>
public static class SafeTensors
{
    private static readonly Dictionary<ScalarType, string> Names = new()
    {
        [ScalarType.Float32] = "F32", [ScalarType.Float64] = "F64", [ScalarType.Float16] = "F16",
        [ScalarType.BFloat16] = "BF16", [ScalarType.Int64] = "I64", [ScalarType.Int32] = "I32",
        [ScalarType.Byte] = "U8", [ScalarType.Bool] = "BOOL",
    };

    public static void Write(string path, IEnumerable<KeyValuePair<string, Tensor>> tensors)
    {
        var header = new JsonObject { ["__metadata__"] = new JsonObject { ["format"] = "pt" } };
        var blobs = new List<byte[]>();
        long offset = 0;
        foreach (var (name, t) in tensors.OrderBy(kv => kv.Key, StringComparer.Ordinal))
        {
            if (!Names.TryGetValue(t.dtype, out var dtype)) throw new ArgumentException($"{name}: dtype {t.dtype} cannot be stored");
            using var cpuT = t.detach().cpu().contiguous();
            var bytes = cpuT.bytes.ToArray();
            header[name] = new JsonObject
            {
                ["dtype"] = dtype,
                ["shape"] = new JsonArray(t.shape.Select(s => (JsonNode)s).ToArray()),
                ["data_offsets"] = new JsonArray(offset, offset + bytes.Length),
            };
            offset += bytes.Length;
            blobs.Add(bytes);
        }
        var headerBytes = Encoding.UTF8.GetBytes(header.ToJsonString());
        int pad = (8 - headerBytes.Length % 8) % 8; // keep data 8-byte aligned, as the reference writer does
        using var stream = new FileStream(path, FileMode.CreateNew, FileAccess.Write);
        using var writer = new BinaryWriter(stream);
        writer.Write((ulong)(headerBytes.Length + pad));
        writer.Write(headerBytes);
        for (int i = 0; i < pad; i++) writer.Write((byte)' ');
        foreach (var blob in blobs) writer.Write(blob);
        writer.Flush();
        stream.Flush(flushToDisk: true);
    }

    /// <summary>All tensors of a file, on the CPU.</summary>
    public static Dictionary<string, Tensor> Read(string path)
    {
        var data = File.ReadAllBytes(path);
        if (data.Length < 8) throw new FormatException($"{path}: too short to be a safetensors file");
        var headerLength = BitConverter.ToUInt64(data, 0);
        if (headerLength > (ulong)(data.Length - 8)) throw new FormatException($"{path}: header length {headerLength} exceeds the file");
        JsonObject header;
        try
        {
            header = JsonNode.Parse(Encoding.UTF8.GetString(data, 8, (int)headerLength))!.AsObject();
        }
        catch (JsonException e)
        {
            throw new FormatException($"{path}: unreadable header ({e.Message})", e);
        }
        long start = 8 + (long)headerLength;
        var result = new Dictionary<string, Tensor>(StringComparer.Ordinal);
        foreach (var (name, node) in header)
        {
            if (name == "__metadata__") continue;
            var entry = node!.AsObject();
            var dtypeName = entry["dtype"]!.GetValue<string>();
            var dtype = Names.FirstOrDefault(kv => kv.Value == dtypeName);
            if (dtype.Value is null) throw new FormatException($"{path}: tensor '{name}' has unsupported dtype {dtypeName}");
            var shape = entry["shape"]!.AsArray().Select(n => n!.GetValue<long>()).ToArray();
            var offsets = entry["data_offsets"]!.AsArray().Select(n => n!.GetValue<long>()).ToArray();
            long length = offsets[1] - offsets[0];
            if (start + offsets[1] > data.Length) throw new FormatException($"{path}: tensor '{name}' runs past the end of the file (truncated?)");
            var t = empty(shape, dtype.Key);
            if (t.NumberOfElements * t.ElementSize != length)
                throw new FormatException($"{path}: tensor '{name}' has {length} bytes for shape [{string.Join(",", shape)}]");
            t.bytes = data.AsSpan((int)(start + offsets[0]), (int)length);
            result[name] = t;
        }
        return result;
    }
}
