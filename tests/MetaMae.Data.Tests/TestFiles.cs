using System.Text;
using MetaMae.Data.Transforms;

namespace MetaMae.Data.Tests;

/// <summary>A temporary directory per test class (the shared <see cref="TempDirTest"/>), and writers for small files in published formats.</summary>
public abstract class DataFilesTest() : TempDirTest("metamae-data-")
{

    protected string Write(string relative, string text)
    {
        var path = Path.Combine(Root, relative);
        Directory.CreateDirectory(Path.GetDirectoryName(path)!);
        File.WriteAllText(path, text);
        return path;
    }

    protected string Write(string relative, byte[] bytes)
    {
        var path = Path.Combine(Root, relative);
        Directory.CreateDirectory(Path.GetDirectoryName(path)!);
        File.WriteAllBytes(path, bytes);
        return path;
    }

    /// <summary>A solid-colour PNG of the given size.</summary>
    protected static byte[] Png(int h, int w, float r, float g, float b)
    {
        var chw = new float[3 * h * w];
        Array.Fill(chw, r, 0, h * w);
        Array.Fill(chw, g, h * w, h * w);
        Array.Fill(chw, b, 2 * h * w, h * w);
        return ImageDecoder.EncodePng(chw, h, w);
    }

    /// <summary>A binary PPM (P6), the format GTSRB ships.</summary>
    protected static byte[] Ppm(int h, int w, byte r, byte g, byte b)
    {
        var header = Encoding.ASCII.GetBytes($"P6\n{w} {h}\n255\n");
        var body = new byte[3 * h * w];
        for (int i = 0; i < h * w; i++) { body[3 * i] = r; body[3 * i + 1] = g; body[3 * i + 2] = b; }
        return [.. header, .. body];
    }

    /// <summary>A .npy file of the given dtype descriptor and raw little-endian data.</summary>
    protected static byte[] NpyBytes(string descr, long[] shape, byte[] data)
    {
        var dims = shape.Length == 1 ? $"{shape[0]}," : string.Join(", ", shape);
        var header = $"{{'descr': '{descr}', 'fortran_order': False, 'shape': ({dims}), }}";
        int total = 10 + header.Length + 1;
        header = header.PadRight(header.Length + (64 - total % 64) % 64) + "\n";
        var h = Encoding.ASCII.GetBytes(header);
        return [0x93, (byte)'N', (byte)'U', (byte)'M', (byte)'P', (byte)'Y', 1, 0, (byte)(h.Length & 0xff), (byte)(h.Length >> 8), .. h, .. data];
    }

    /// <summary>A sine of <paramref name="hz"/> Hz.</summary>
    protected static float[] Tone(double hz, int rate, int samples, float amplitude = 0.5f) =>
        Enumerable.Range(0, samples).Select(i => (float)(amplitude * Math.Sin(2 * Math.PI * hz * i / rate))).ToArray();
}

/// <summary>The real data sets beside the repository (../shared/data), found from the test's directory.</summary>
public static class SharedData
{
    public static string Dir(string name)
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            if (!File.Exists(Path.Combine(dir.FullName, "MetaMae.Actors.sln"))) continue;
            var shared = Path.Combine(dir.Parent!.FullName, "shared", "data", name);
            return Directory.Exists(shared) ? shared
                : throw new DirectoryNotFoundException($"{shared} not found: these tests read the real data sets in ../shared/data beside the repository");
        }
        throw new DirectoryNotFoundException("no MetaMae.Actors.sln above the test directory");
    }
}
