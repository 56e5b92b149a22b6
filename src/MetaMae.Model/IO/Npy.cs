using System.Text;
using System.Text.RegularExpressions;
using static TorchSharp.torch;

namespace MetaMae.Model.IO;

/// <summary>
/// Reads NumPy .npy files (format versions 1 to 3, little-endian, C order) into tensors: how weights and fixtures
/// exported from PyTorch reach this project without a pickle reader.
/// </summary>
public static partial class Npy
{
    private static readonly byte[] Magic = [0x93, (byte)'N', (byte)'U', (byte)'M', (byte)'P', (byte)'Y'];

    public static Tensor Read(string path)
    {
        using var stream = File.OpenRead(path);
        try
        {
            return Read(stream);
        }
        catch (FormatException e)
        {
            throw new FormatException($"{path}: {e.Message}", e);
        }
    }

    public static Tensor Read(Stream stream)
    {
        using var reader = new BinaryReader(stream);
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
        var shape = shapeMatch.Groups[1].Value.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)
            .Select(long.Parse).ToArray();
        long count = shape.Aggregate(1L, (a, b) => a * b);

        var (dtype, width) = descr.Groups[1].Value switch
        {
            "<f4" => (ScalarType.Float32, 4),
            "<f8" => (ScalarType.Float64, 8),
            "<i8" => (ScalarType.Int64, 8),
            "<i4" => (ScalarType.Int32, 4),
            "|u1" => (ScalarType.Byte, 1),
            "|b1" => (ScalarType.Bool, 1),
            var other => throw new FormatException($"dtype '{other}' is not supported (little-endian f4, f8, i4, i8, u1, b1 are)"),
        };
        var bytes = reader.ReadBytes(checked((int)(count * width)));
        if (bytes.Length != count * width) throw new FormatException($"truncated: expected {count * width} data bytes, found {bytes.Length}");

        var t = empty(shape, dtype);
        t.bytes = bytes;
        return t;
    }

    [GeneratedRegex(@"'descr':\s*'([^']+)'")]
    private static partial Regex DescrPattern();
    [GeneratedRegex(@"'fortran_order':\s*(True|False)")]
    private static partial Regex FortranPattern();
    [GeneratedRegex(@"'shape':\s*\(([^)]*)\)")]
    private static partial Regex ShapePattern();
}
