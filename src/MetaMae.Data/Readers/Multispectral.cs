using BitMiracle.LibTiff.Classic;
using MetaMae.Data.Formats;
using MetaMae.Data.Transforms;

namespace MetaMae.Data.Readers;

/// <summary>EuroSAT's 13-band GeoTIFFs and WM-811K wafer maps.</summary>
public static class Multispectral
{
    public static readonly double[] EuroSatMean =
        [1354.3003, 1117.7579, 1042.2800, 947.6443, 1199.6334, 2001.9829, 2372.5579, 2299.6663, 731.0175, 12.0956, 1822.4083, 1119.5759, 2598.4456];
    public static readonly double[] EuroSatStd =
        [244.0469, 323.4128, 385.0928, 584.1638, 566.0543, 858.5753, 1083.6704, 1103.0342, 402.9594, 4.7207, 1002.4071, 759.6080, 1228.4104];

    /// <summary>
    /// EuroSAT "all bands" release: EuroSAT_MS/CLASS/CLASS_N.tif (or the zip's ds/images/remote_sensing/otherDatasets/
    /// sentinel_2/tif/CLASS/...), 64x64 pixels x 13 uint16 bands, normalised with DABS's per-band constants;
    /// a seeded 90/10 split.
    /// </summary>
    public static IDataset EuroSat(DatasetSpec spec, ReaderOptions o)
    {
        const string layout = "EuroSAT_MS/CLASS/CLASS_N.tif (13-band GeoTIFF, the 'all bands' release)";
        var root = new[] { "EuroSAT_MS", "EuroSATallBands", Path.Combine("ds", "images", "remote_sensing", "otherDatasets", "sentinel_2", "tif") }
            .Select(d => Path.Combine(o.Root, d)).FirstOrDefault(Directory.Exists) ?? throw new DataLayoutException(Path.Combine(o.Root, "EuroSAT_MS"), layout);
        var classes = Directory.GetDirectories(root).Select(Path.GetFileName).Order(StringComparer.Ordinal).ToList();
        var files = classes.SelectMany((c, label) => Directory.EnumerateFiles(Path.Combine(root, c!), "*.tif")
            .Order(StringComparer.Ordinal).Select(f => (Path: f, Label: label))).ToList();
        var chosen = Layout.SplitShuffled(files, o.Split, 0.9);
        return new ListDataset<(string Path, int Label)>(spec, chosen, r => r.Path,
            (r, _) => Sample.Dense(ReadBands(r.Path, spec.Shape[0], spec.Shape[1], spec.Shape[2], EuroSatMean, EuroSatStd), r.Label));
    }

    /// <summary>Reads a multi-band 16-bit TIFF (contiguous or planar) to normalised (C, H, W) floats.</summary>
    public static float[] ReadBands(string path, int channels, int height, int width, double[] mean, double[] std)
    {
        Tiff.SetErrorHandler(new QuietTiffErrors());
        using var tiff = Tiff.Open(path, "r") ?? throw new FormatException("not a readable TIFF file");
        int w = tiff.GetField(TiffTag.IMAGEWIDTH)[0].ToInt(), h = tiff.GetField(TiffTag.IMAGELENGTH)[0].ToInt();
        int spp = tiff.GetField(TiffTag.SAMPLESPERPIXEL)?[0].ToInt() ?? 1;
        int bits = tiff.GetField(TiffTag.BITSPERSAMPLE)?[0].ToInt() ?? 8;
        var planar = (PlanarConfig)(tiff.GetField(TiffTag.PLANARCONFIG)?[0].ToInt() ?? (int)PlanarConfig.CONTIG);
        if (w != width || h != height || spp != channels)
            throw new FormatException($"image is {w}x{h} with {spp} bands, expected {width}x{height} with {channels}");
        if (bits != 16) throw new FormatException($"{bits}-bit samples, expected 16-bit");
        var result = new float[channels * height * width];
        int plane = height * width;
        if (planar == PlanarConfig.CONTIG)
        {
            var line = new byte[tiff.ScanlineSize()];
            for (int y = 0; y < height; y++)
            {
                if (!tiff.ReadScanline(line, y)) throw new FormatException($"row {y} is unreadable (truncated?)");
                for (int x = 0; x < width; x++)
                    for (int c = 0; c < channels; c++)
                    {
                        var v = BitConverter.ToUInt16(line, 2 * (x * channels + c));
                        result[c * plane + y * width + x] = (float)((v - mean[c]) / std[c]);
                    }
            }
        }
        else
        {
            var line = new byte[tiff.ScanlineSize()];
            for (int c = 0; c < channels; c++)
                for (int y = 0; y < height; y++)
                {
                    if (!tiff.ReadScanline(line, y, (short)c)) throw new FormatException($"band {c} row {y} is unreadable (truncated?)");
                    for (int x = 0; x < width; x++)
                        result[c * plane + y * width + x] = (float)((BitConverter.ToUInt16(line, 2 * x) - mean[c]) / std[c]);
                }
        }
        return result;
    }

    /// <summary>Writes a contiguous multi-band 16-bit TIFF (tests, exports).</summary>
    public static void WriteBands(string path, ushort[] chw, int channels, int height, int width)
    {
        using var tiff = Tiff.Open(path, "w");
        tiff.SetField(TiffTag.IMAGEWIDTH, width);
        tiff.SetField(TiffTag.IMAGELENGTH, height);
        tiff.SetField(TiffTag.SAMPLESPERPIXEL, channels);
        tiff.SetField(TiffTag.BITSPERSAMPLE, 16);
        tiff.SetField(TiffTag.PLANARCONFIG, PlanarConfig.CONTIG);
        tiff.SetField(TiffTag.PHOTOMETRIC, Photometric.MINISBLACK);
        tiff.SetField(TiffTag.ROWSPERSTRIP, height);
        var line = new byte[width * channels * 2];
        for (int y = 0; y < height; y++)
        {
            for (int x = 0; x < width; x++)
                for (int c = 0; c < channels; c++)
                    BitConverter.TryWriteBytes(line.AsSpan(2 * (x * channels + c)), chw[c * height * width + y * width + x]);
            tiff.WriteScanline(line, y);
        }
    }

    private sealed class QuietTiffErrors : TiffErrorHandler
    {
        public override void WarningHandler(Tiff tif, string method, string format, params object[] args) { }
        public override void WarningHandlerExt(Tiff tif, object clientData, string method, string format, params object[] args) { }
    }

    public static readonly string[] WaferFailureTypes = ["none", "random", "donut", "scratch", "center", "loc", "edge-loc", "edge-ring", "near-full"];

    /// <summary>
    /// WM-811K wafer maps. The original is a pandas pickle (code, not data); read an .npz export instead, made once with
    /// <c>python -c "import pandas as pd, numpy as np; d = pd.read_pickle('LSWMD.pkl'); np.savez_compressed('wm811k.npz',
    /// failure_type=np.array([str(t[0][0]) if len(t) else 'unlabeled' for t in d.failureType]),
    /// **{f'map_{i:06d}': np.asarray(m, np.uint8) for i, m in enumerate(d.waferMap)})"</c>.
    /// Each map (values 0, 1, 2) is resized to 32x32 as DABS does (grey levels v/255, bilinear, 3 channels). Labelled
    /// maps form the transfer set (seeded 90/10 split); pretraining uses the unlabelled ones.
    /// </summary>
    public static IDataset Wafer(DatasetSpec spec, ReaderOptions o)
    {
        var path = Layout.File(Path.Combine(o.Root, "wm811k.npz"), "wm811k.npz: failure_type (string array) and map_NNNNNN (uint8 2-D arrays), see README");
        var arrays = Npy.ReadNpz(path);
        if (!arrays.TryGetValue("failure_type", out var types)) throw new FormatException($"{path}: no 'failure_type' array");
        var labels = types.ToStrings();
        var indices = Enumerable.Range(0, labels.Length)
            .Where(i => (labels[i] is "unlabeled" or "" or "[]") == (o.Split == Split.Pretrain)).ToList();
        if (o.Split != Split.Pretrain) indices = Layout.SplitShuffled(indices, o.Split, 0.9);
        return new ListDataset<int>(spec, indices, i => $"{path}:map_{i:D6}", (i, _) =>
        {
            if (!arrays.TryGetValue($"map_{i:D6}", out var map)) throw new FormatException("map array is missing");
            if (map.Shape.Length != 2) throw new FormatException($"map has {map.Shape.Length} dimensions, expected 2");
            var grey = map.ToFloat32().Select(v => (byte)Math.Clamp(v, 0, 255)).ToArray();
            var label = o.Split == Split.Pretrain ? -1 : Array.IndexOf(WaferFailureTypes, labels[i].ToLowerInvariant());
            if (o.Split != Split.Pretrain && label < 0) throw new FormatException($"unknown failure type '{labels[i]}'");
            return Sample.Dense(ImageDecoder.GreyToRgb(grey, (int)map.Shape[0], (int)map.Shape[1], spec.Shape[1], spec.Shape[2]), label);
        });
    }
}
