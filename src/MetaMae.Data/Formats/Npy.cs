using System.IO.Compression;
using System.Text;
using System.Text.RegularExpressions;

namespace MetaMae.Data.Formats;

/// <summary>A NumPy array as plain bytes: dtype descriptor ('&lt;f4', '|u1', ...), shape, C-order data.</summary>
public sealed record NpyArray(string Descr, long[] Shape, byte[] Data)
{
    public long Count => Shape.Aggregate(1L, (a, b) => a * b);

    public float[] ToFloat32() => Descr switch
    {
        "<f4" => Cast<float, float>(x => x),
        "<f8" => Cast<double, float>(x => (float)x),
        "|u1" or "<u1" => Data.Select(b => (float)b).ToArray(),
        "|i1" or "<i1" => Data.Select(b => (float)(sbyte)b).ToArray(),
        "<i8" => Cast<long, float>(x => x),
        "<i4" => Cast<int, float>(x => x),
        "|b1" => Data.Select(b => b != 0 ? 1f : 0f).ToArray(),
        _ => throw new FormatException($"dtype '{Descr}' cannot be read as numbers"),
    };

    public long[] ToInt64() => Descr switch
    {
        "<i8" => Cast<long, long>(x => x),
        "<i4" => Cast<int, long>(x => x),
        "|u1" or "<u1" => Data.Select(b => (long)b).ToArray(),
        _ => throw new FormatException($"dtype '{Descr}' is not an integer type"),
    };

    /// <summary>Fixed-width unicode strings ('&lt;U12'), as NumPy stores text arrays.</summary>
    public string[] ToStrings()
    {
        var m = Regex.Match(Descr, @"^<U(\d+)$");
        if (!m.Success) throw new FormatException($"dtype '{Descr}' is not a unicode string array");
        int width = int.Parse(m.Groups[1].Value);
        var result = new string[Count];
        for (long i = 0; i < Count; i++)
            result[i] = Encoding.UTF32.GetString(Data, (int)(i * width * 4), width * 4).TrimEnd('\0');
        return result;
    }

    private TOut[] Cast<TIn, TOut>(Func<TIn, TOut> f) where TIn : unmanaged =>
        System.Runtime.InteropServices.MemoryMarshal.Cast<byte, TIn>(Data).ToArray().Select(f).ToArray();
}

/// <summary>
/// NumPy .npy (format versions 1 to 3, little-endian, C order) and .npz (a zip of .npy files). Object arrays
/// (pickles) are refused: they are code, not data.
/// </summary>
public static partial class Npy
{
    private static readonly byte[] Magic = [0x93, (byte)'N', (byte)'U', (byte)'M', (byte)'P', (byte)'Y'];

    public static NpyArray Read(string path)
    {
        using var stream = File.OpenRead(path);
        try
        {
            return Read(stream);
        }
        catch (Exception e) when (e is FormatException or EndOfStreamException)
        {
            throw new FormatException($"{path}: {e.Message}", e);
        }
    }

    public static NpyArray Read(Stream stream)
    {
        using var reader = new BinaryReader(stream, Encoding.Latin1, leaveOpen: true);
        var magic = reader.ReadBytes(6);
        if (!magic.AsSpan().SequenceEqual(Magic)) throw new FormatException("not a .npy file (bad magic)");
        int major = reader.ReadByte();
        reader.ReadByte();
        int headerLength = major == 1 ? reader.ReadUInt16() : (int)reader.ReadUInt32();
        var header = Encoding.Latin1.GetString(reader.ReadBytes(headerLength));

        var descr = DescrPattern().Match(header);
        var fortran = FortranPattern().Match(header);
        var shapeMatch = ShapePattern().Match(header);
        if (!descr.Success || !shapeMatch.Success) throw new FormatException($"unreadable header: {header.Trim()}");
        if (fortran.Success && fortran.Groups[1].Value == "True") throw new FormatException("Fortran-order arrays are not supported");
        var d = descr.Groups[1].Value;
        if (d.Contains('O')) throw new FormatException("object arrays (pickled Python objects) are not read; export plain arrays");
        if (d.StartsWith('>')) throw new FormatException($"big-endian dtype '{d}' is not supported");
        var shape = shapeMatch.Groups[1].Value.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)
            .Select(long.Parse).ToArray();
        long count = HeaderLimits.Product(shape, "the .npy header");
        int width = ItemSize(d);
        long claimed = count <= long.MaxValue / Math.Max(1, width) ? count * width : throw new FormatException($"the .npy header claims {count} items of {width} bytes, more than 2^63");
        HeaderLimits.Check($"the .npy header ({string.Join("x", shape)} of {d})", claimed, stream.CanSeek ? stream.Length - stream.Position : null);
        var bytes = reader.ReadBytes((int)claimed);
        if (bytes.Length != count * width) throw new FormatException($"truncated: expected {count * width} data bytes, found {bytes.Length}");
        return new NpyArray(d, shape, bytes);
    }

    /// <summary>All arrays of an .npz file, by name (without the .npy suffix).</summary>
    public static Dictionary<string, NpyArray> ReadNpz(string path)
    {
        using var zip = ZipFile.OpenRead(path);
        var result = new Dictionary<string, NpyArray>(StringComparer.Ordinal);
        foreach (var entry in zip.Entries.Where(e => e.Name.EndsWith(".npy", StringComparison.Ordinal)))
        {
            try
            {
                using var s = entry.Open();
                using var buffer = new MemoryStream(HeaderLimits.ReadAtMost(s, "the entry")); // a zip entry's sizes are claims too
                result[entry.Name[..^4]] = Read(buffer);
            }
            catch (Exception e) when (e is FormatException or EndOfStreamException)
            {
                throw new FormatException($"{path}:{entry.Name}: {e.Message}", e);
            }
        }
        return result;
    }

    private static int ItemSize(string descr)
    {
        var m = Regex.Match(descr, @"^[<>|=]?([a-zA-Z])(\d+)$");
        if (!m.Success) throw new FormatException($"dtype '{descr}' is not supported");
        int n = int.Parse(m.Groups[2].Value);
        return m.Groups[1].Value == "U" ? n * 4 : n;
    }

    [GeneratedRegex(@"'descr':\s*'([^']+)'")]
    private static partial Regex DescrPattern();
    [GeneratedRegex(@"'fortran_order':\s*(True|False)")]
    private static partial Regex FortranPattern();
    [GeneratedRegex(@"'shape':\s*\(([^)]*)\)")]
    private static partial Regex ShapePattern();
}
