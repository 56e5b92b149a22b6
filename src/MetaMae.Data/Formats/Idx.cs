using System.IO.Compression;

namespace MetaMae.Data.Formats;

/// <summary>An IDX file (MNIST, Fashion-MNIST): big-endian dims, unsigned-byte data.</summary>
public sealed record IdxArray(int[] Shape, byte[] Data)
{
    public int Count => Shape[0];
    public int ItemLength => Shape.Skip(1).Aggregate(1, (a, b) => a * b);
}

public static class Idx
{
    /// <summary>Reads a .idx or gzipped .idx.gz file of unsigned bytes (type 0x08).</summary>
    public static IdxArray Read(string path)
    {
        if (!File.Exists(path)) throw new FileNotFoundException($"{path} not found", path);
        using var stream = GzipFile.OpenRead(path);
        // The header first: what it claims is checked (no overflow, within the file and the limit) before the data is read.
        var head = new byte[4];
        if (stream.ReadAtLeast(head, 4, throwOnEndOfStream: false) < 4 || head[0] != 0 || head[1] != 0)
            throw new FormatException($"{path}: not an IDX file (bad magic)");
        if (head[2] != 0x08) throw new FormatException($"{path}: IDX type 0x{head[2]:x2} is not unsigned bytes (0x08)");
        int dims = head[3];
        var dimBytes = new byte[4 * dims];
        if (dims == 0 || stream.ReadAtLeast(dimBytes, dimBytes.Length, throwOnEndOfStream: false) < dimBytes.Length)
            throw new FormatException($"{path}: IDX header of {dims} dimension(s) is cut short");
        var shape = new int[dims];
        for (int i = 0; i < dims; i++)
            shape[i] = (dimBytes[4 * i] << 24) | (dimBytes[1 + 4 * i] << 16) | (dimBytes[2 + 4 * i] << 8) | dimBytes[3 + 4 * i];
        long expected = HeaderLimits.Product(shape.Select(d => (long)d).ToArray(), $"{path}: the IDX header");
        if (shape[0] == 0) throw new InvalidDataException($"{path}: holds 0 records");
        long? available = GzipFile.IsGzipName(path) ? null : new FileInfo(path).Length - 4 - 4 * dims;
        HeaderLimits.Check($"{path}: the IDX header ({string.Join("x", shape)})", expected, available);
        // Compressed, the data is read as it comes (never more than the header claims), not allocated by the claim.
        byte[] data;
        try
        {
            data = HeaderLimits.ReadAtMost(stream, $"{path}: the IDX data", expected);
        }
        catch (FormatException)
        {
            throw new FormatException($"{path}: header says {string.Join("x", shape)} = {expected} bytes, file has more");
        }
        if (data.Length != expected)
            throw new FormatException($"{path}: header says {string.Join("x", shape)} = {expected} bytes, file has {data.Length}");
        return new IdxArray(shape, data);
    }

    /// <summary>Writes an IDX file of unsigned bytes (gzipped when the name ends in .gz).</summary>
    public static void Write(string path, int[] shape, byte[] data)
    {
        using var file = File.Create(path);
        using Stream stream = path.EndsWith(".gz", StringComparison.OrdinalIgnoreCase) ? new GZipStream(file, CompressionLevel.Fastest) : file;
        stream.Write([0, 0, 0x08, (byte)shape.Length]);
        foreach (var d in shape) stream.Write([(byte)(d >> 24), (byte)(d >> 16), (byte)(d >> 8), (byte)d]);
        stream.Write(data);
    }
}
