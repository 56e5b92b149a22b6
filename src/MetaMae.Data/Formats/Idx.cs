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
        using var buffer = new MemoryStream();
        stream.CopyTo(buffer);
        var bytes = buffer.ToArray();
        if (bytes.Length < 4 || bytes[0] != 0 || bytes[1] != 0)
            throw new FormatException($"{path}: not an IDX file (bad magic)");
        if (bytes[2] != 0x08) throw new FormatException($"{path}: IDX type 0x{bytes[2]:x2} is not unsigned bytes (0x08)");
        int dims = bytes[3];
        if (dims == 0 || bytes.Length < 4 + 4 * dims) throw new FormatException($"{path}: IDX header of {dims} dimension(s) is cut short");
        var shape = new int[dims];
        for (int i = 0; i < dims; i++)
            shape[i] = (bytes[4 + 4 * i] << 24) | (bytes[5 + 4 * i] << 16) | (bytes[6 + 4 * i] << 8) | bytes[7 + 4 * i];
        int offset = 4 + 4 * dims;
        if (shape.Any(d => d < 0)) throw new FormatException($"{path}: IDX header has a negative dimension ({string.Join("x", shape)})");
        if (shape[0] == 0) throw new InvalidDataException($"{path}: holds 0 records");
        long expected = shape.Aggregate(1L, (a, b) => a * b);
        if (bytes.Length - offset != expected)
            throw new FormatException($"{path}: header says {string.Join("x", shape)} = {expected} bytes, file has {bytes.Length - offset}");
        return new IdxArray(shape, bytes[offset..]);
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
