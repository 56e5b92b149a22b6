using System.IO.Compression;
using System.Text;

namespace MetaMae.Data.Formats;

/// <summary>
/// The numeric arrays of a MATLAB level-5 .mat file (what scipy.io.loadmat reads), including zlib-compressed
/// elements (MATLAB v7's default). Enough for label and split files such as VGG Flowers' imagelabels.mat and setid.mat.
/// </summary>
public static class MatV5
{
    private const int MiInt8 = 1, MiUInt8 = 2, MiInt16 = 3, MiUInt16 = 4, MiInt32 = 5, MiUInt32 = 6, MiSingle = 7,
        MiDouble = 9, MiInt64 = 12, MiUInt64 = 13, MiMatrix = 14, MiCompressed = 15;

    /// <summary>Every numeric variable as (dims, column-major values as double).</summary>
    public static Dictionary<string, (int[] Dims, double[] Values)> Read(string path)
    {
        HeaderLimits.Check($"{path}: the MAT-file", new FileInfo(path).Length, null);
        var bytes = File.ReadAllBytes(path);
        if (bytes.Length < 128 || !Encoding.ASCII.GetString(bytes, 0, 6).StartsWith("MATLAB", StringComparison.Ordinal))
            throw new FormatException($"{path}: not a MATLAB 5.0 MAT-file");
        if (bytes[126] != 'I' || bytes[127] != 'M') throw new FormatException($"{path}: big-endian MAT-files are not supported");
        var result = new Dictionary<string, (int[], double[])>(StringComparer.Ordinal);
        int pos = 128;
        while (pos + 8 <= bytes.Length)
        {
            var (type, size, dataStart, next) = Tag(bytes, pos, path);
            if (type == MiCompressed)
            {
                using var z = new ZLibStream(new MemoryStream(bytes, dataStart, size), CompressionMode.Decompress);
                var inner = HeaderLimits.ReadAtMost(z, $"{path}: a compressed element");
                var (t2, s2, d2, _) = Tag(inner, 0, path);
                if (t2 == MiMatrix) ReadMatrix(inner, d2, s2, result, path);
            }
            else if (type == MiMatrix)
            {
                ReadMatrix(bytes, dataStart, size, result, path);
            }
            pos = next;
        }
        return result;
    }

    /// <summary>A data element's tag; the size it claims must lie within the bytes there are.</summary>
    private static (int Type, int Size, int DataStart, int Next) Tag(byte[] b, int pos, string path)
    {
        if (pos < 0 || pos + 8 > b.Length) throw new FormatException($"{path}: a data element at byte {pos} is cut short");
        uint first = BitConverter.ToUInt32(b, pos);
        if ((first >> 16) != 0) // small data element: size in the upper half, data in the next 4 bytes
        {
            if ((first >> 16) > 4) throw new FormatException($"{path}: a small data element at byte {pos} claims {first >> 16} bytes (at most 4)");
            return ((int)(first & 0xFFFF), (int)(first >> 16), pos + 4, pos + 8);
        }
        int size = BitConverter.ToInt32(b, pos + 4);
        HeaderLimits.Check($"{path}: the data element at byte {pos}", size, b.Length - (pos + 8));
        int next = pos + 8 + size;
        if (first != MiCompressed) next = pos + 8 + ((size + 7) & ~7);
        return ((int)first, size, pos + 8, next);
    }

    private static void ReadMatrix(byte[] b, int start, int size, Dictionary<string, (int[], double[])> result, string path)
    {
        int pos = start;
        var (_, _, flagsStart, next) = Tag(b, pos, path); // array flags
        int cls = b[flagsStart] & 0xFF;
        pos = next;
        var (_, dimSize, dimStart, next2) = Tag(b, pos, path);
        var dims = Enumerable.Range(0, dimSize / 4).Select(i => BitConverter.ToInt32(b, dimStart + 4 * i)).ToArray();
        pos = next2;
        var (_, nameSize, nameStart, next3) = Tag(b, pos, path);
        var name = Encoding.ASCII.GetString(b, nameStart, nameSize);
        pos = next3;
        if (cls is < 6 or > 15) return; // cells, structs, chars, sparse: not numeric
        var (type, dataSize, dataStart, _) = Tag(b, pos, path);
        result[name] = (dims, Values(b, type, dataStart, dataSize, path, name));
    }

    private static double[] Values(byte[] b, int type, int start, int size, string path, string name)
    {
        int width = type switch
        {
            MiInt8 or MiUInt8 => 1, MiInt16 or MiUInt16 => 2, MiInt32 or MiUInt32 or MiSingle => 4,
            MiDouble or MiInt64 or MiUInt64 => 8,
            _ => throw new FormatException($"{path}: variable '{name}' has unsupported data type {type}"),
        };
        var values = new double[size / width];
        for (int i = 0; i < values.Length; i++)
        {
            int o = start + i * width;
            values[i] = type switch
            {
                MiInt8 => (sbyte)b[o], MiUInt8 => b[o], MiInt16 => BitConverter.ToInt16(b, o), MiUInt16 => BitConverter.ToUInt16(b, o),
                MiInt32 => BitConverter.ToInt32(b, o), MiUInt32 => BitConverter.ToUInt32(b, o), MiSingle => BitConverter.ToSingle(b, o),
                MiDouble => BitConverter.ToDouble(b, o), MiInt64 => BitConverter.ToInt64(b, o), _ => BitConverter.ToUInt64(b, o),
            };
        }
        return values;
    }

    /// <summary>Writes numeric row vectors as a MAT v5 file (compressed), for tests and exports.</summary>
    public static void WriteRowVectors(string path, IReadOnlyDictionary<string, double[]> vars, bool compress = true)
    {
        using var file = File.Create(path);
        var header = new byte[128];
        Encoding.ASCII.GetBytes("MATLAB 5.0 MAT-file, written by MetaMae.Data".PadRight(116)).CopyTo(header, 0);
        header[124] = 0; header[125] = 1; header[126] = (byte)'I'; header[127] = (byte)'M';
        file.Write(header);
        foreach (var (name, values) in vars)
        {
            using var m = new MemoryStream();
            var w = new BinaryWriter(m);
            var nameBytes = Encoding.ASCII.GetBytes(name);
            var body = new MemoryStream();
            var bw = new BinaryWriter(body);
            bw.Write(MiUInt32); bw.Write(8); bw.Write(6); bw.Write(0);                      // flags: double class
            bw.Write(MiInt32); bw.Write(8); bw.Write(1); bw.Write(values.Length);           // dims 1 x n
            bw.Write(MiInt8); bw.Write(nameBytes.Length); bw.Write(nameBytes); Pad(bw, nameBytes.Length);
            bw.Write(MiDouble); bw.Write(values.Length * 8); foreach (var v in values) bw.Write(v);
            w.Write(MiMatrix); w.Write((int)body.Length); w.Write(body.ToArray());
            var element = m.ToArray();
            if (!compress) { file.Write(element); continue; }
            using var packed = new MemoryStream();
            using (var z = new ZLibStream(packed, CompressionLevel.Optimal, leaveOpen: true)) z.Write(element);
            file.Write(BitConverter.GetBytes(MiCompressed));
            file.Write(BitConverter.GetBytes((int)packed.Length));
            file.Write(packed.ToArray());
        }
    }

    private static void Pad(BinaryWriter w, int n)
    {
        for (int i = n; i % 8 != 0; i++) w.Write((byte)0);
    }
}
