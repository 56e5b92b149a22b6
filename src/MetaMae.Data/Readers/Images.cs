using MetaMae.Data.Formats;
using MetaMae.Data.Transforms;

namespace MetaMae.Data.Readers;

/// <summary>An image file, its class, and an optional crop box (FGVC-Aircraft).</summary>
public sealed record ImageRecord(string Path, int Label, (int, int, int, int)? Crop = null);

/// <summary>Readers for the DABS natural-image sets in their publishers' layouts, decoded to (3, 32, 32) in [0, 1].</summary>
public static class Images
{
    public static IDataset FromFiles(DatasetSpec spec, IReadOnlyList<ImageRecord> records) =>
        new ListDataset<ImageRecord>(spec, records, r => r.Path,
            (r, _) => Sample.Dense(ImageDecoder.DecodeRgb(System.IO.File.ReadAllBytes(r.Path), spec.Shape[1], spec.Shape[2], r.Crop), r.Label));

    /// <summary>CIFAR-10 binary version: cifar-10-batches-bin/data_batch_{1..5}.bin and test_batch.bin, 1 + 3072 bytes a record.</summary>
    public static IDataset Cifar10(DatasetSpec spec, ReaderOptions o)
    {
        const string layout = "cifar-10-batches-bin/{data_batch_1..5.bin, test_batch.bin} (the CIFAR-10 binary version)";
        var dir = Layout.Directory(Path.Combine(o.Root, "cifar-10-batches-bin"), layout);
        var files = o.Training ? Enumerable.Range(1, 5).Select(i => $"data_batch_{i}.bin") : ["test_batch.bin"];
        var records = new List<(string File, byte[] Data, int Index)>();
        foreach (var name in files)
        {
            var path = Layout.File(Path.Combine(dir, name), layout);
            var data = System.IO.File.ReadAllBytes(path);
            if (data.Length % 3073 != 0)
                throw new FormatException($"{path}: {data.Length} bytes is not a whole number of 3073-byte records (truncated?)");
            for (int i = 0; i < data.Length / 3073; i++) records.Add((path, data, i));
        }
        return new ListDataset<(string File, byte[] Data, int Index)>(spec, records, r => $"{r.File}#{r.Index}", (r, _) =>
        {
            int at = r.Index * 3073;
            int label = r.Data[at];
            if (label > 9) throw new FormatException($"label byte {label} is not a CIFAR-10 class (0..9)");
            var values = new float[3072];
            for (int i = 0; i < 3072; i++) values[i] = r.Data[at + 1 + i] / 255f;
            return Sample.Dense(values, label);
        });
    }

    private static readonly string[] ImageExtensions = [".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".ppm", ".pgm"];

    /// <summary>
    /// ImageNet-style class folders: ROOT/train/CLASS/*.jpg and ROOT/val/CLASS/*.jpg; without train/val folders,
    /// ROOT/CLASS/* split per class 80/20 with a fixed seed (as DABS splits GTSRB).
    /// </summary>
    public static IDataset ClassFolders(DatasetSpec spec, ReaderOptions o, string subdirectory = "")
    {
        var root = Layout.Directory(Path.Combine(o.Root, subdirectory), "ROOT/CLASS/*.jpg|png|ppm, or ROOT/train/CLASS/* and ROOT/val/CLASS/*");
        string splitDir = o.Training ? "train" : "val";
        bool hasSplits = System.IO.Directory.Exists(Path.Combine(root, "train")) && System.IO.Directory.Exists(Path.Combine(root, "val"));
        var listRoot = hasSplits ? Path.Combine(root, splitDir) : root;
        var classes = System.IO.Directory.GetDirectories(listRoot).Select(Path.GetFileName).Order(StringComparer.Ordinal).ToList();
        if (classes.Count == 0) throw new DataLayoutException(Path.Combine(listRoot, "CLASS"), "one folder of images per class");
        var records = classes.SelectMany((c, label) => System.IO.Directory.EnumerateFiles(Path.Combine(listRoot, c!))
                .Where(f => ImageExtensions.Contains(Path.GetExtension(f).ToLowerInvariant()))
                .Order(StringComparer.Ordinal).Select(f => new ImageRecord(f, label)))
            .ToList();
        return FromFiles(spec, hasSplits ? records : Layout.SplitPerClass(records, r => r.Label, o.Split, 0.8));
    }

    /// <summary>GTSRB: GTSRB/Final_Training/Images/00000..00042/*.ppm, split per class 80/20.</summary>
    public static IDataset Gtsrb(DatasetSpec spec, ReaderOptions o) =>
        ClassFolders(spec, o, Path.Combine("GTSRB", "Final_Training", "Images"));

    /// <summary>CUB-200-2011: images.txt, image_class_labels.txt, train_test_split.txt and images/.</summary>
    public static IDataset Cub200(DatasetSpec spec, ReaderOptions o)
    {
        const string layout = "CUB_200_2011/{images.txt, image_class_labels.txt, train_test_split.txt, images/...}";
        var dir = Layout.Directory(Path.Combine(o.Root, "CUB_200_2011"), layout);
        var images = IdPairs(Layout.File(Path.Combine(dir, "images.txt"), layout));
        var labels = IdPairs(Layout.File(Path.Combine(dir, "image_class_labels.txt"), layout));
        var splits = IdPairs(Layout.File(Path.Combine(dir, "train_test_split.txt"), layout));
        var wanted = o.Training ? "1" : "0";
        var records = images.Where(kv => splits.GetValueOrDefault(kv.Key) == wanted)
            .Select(kv => new ImageRecord(Path.Combine(dir, "images", kv.Value), int.Parse(labels[kv.Key]) - 1)).ToList();
        return FromFiles(spec, records);
    }

    /// <summary>VGG Flowers 102: imagelabels.mat (MAT v5) and jpg/image_00001.jpg..., split per class 80/20.</summary>
    public static IDataset Flowers102(DatasetSpec spec, ReaderOptions o)
    {
        const string layout = "flowers102/{imagelabels.mat, jpg/image_00001.jpg ...}";
        var dir = Layout.Directory(Path.Combine(o.Root, "flowers102"), layout);
        var mat = MatV5.Read(Layout.File(Path.Combine(dir, "imagelabels.mat"), layout));
        if (!mat.TryGetValue("labels", out var labels)) throw new FormatException($"{dir}/imagelabels.mat has no 'labels' variable");
        var records = labels.Values.Select((l, i) => new ImageRecord(Path.Combine(dir, "jpg", $"image_{i + 1:D5}.jpg"), (int)l - 1)).ToList();
        return FromFiles(spec, Layout.SplitPerClass(records, r => r.Label, o.Split, 0.8));
    }

    /// <summary>DTD: dtd/labels/{train1,val1,test1}.txt of CATEGORY/NAME.jpg lines, images under dtd/images/.</summary>
    public static IDataset Dtd(DatasetSpec spec, ReaderOptions o)
    {
        const string layout = "dtd/{labels/train1.txt, labels/val1.txt, labels/test1.txt, images/CATEGORY/*.jpg}";
        var dir = Layout.Directory(Path.Combine(o.Root, "dtd"), layout);
        var lists = o.Training ? new[] { "train1.txt", "val1.txt" } : ["test1.txt"];
        var lines = lists.SelectMany(f => System.IO.File.ReadAllLines(Layout.File(Path.Combine(dir, "labels", f), layout)))
            .Select(l => l.Trim()).Where(l => l.Length > 0).ToList();
        var map = Layout.LabelMap(lines.Select(l => l.Split('/')[0]));
        return FromFiles(spec, lines.Select(l => new ImageRecord(Path.Combine(dir, "images", l), map[l.Split('/')[0]])).ToList());
    }

    /// <summary>FGVC-Aircraft 2013b: data/images_variant_{trainval,test}.txt, data/images_box.txt, data/images/*.jpg; cropped to the box.</summary>
    public static IDataset Aircraft(DatasetSpec spec, ReaderOptions o)
    {
        const string layout = "fgvc-aircraft-2013b/data/{images_variant_trainval.txt, images_variant_test.txt, images_box.txt, images/*.jpg}";
        var dir = Layout.Directory(Path.Combine(o.Root, "fgvc-aircraft-2013b", "data"), layout);
        var variants = IdPairs(Layout.File(Path.Combine(dir, $"images_variant_{(o.Training ? "trainval" : "test")}.txt"), layout));
        var boxes = System.IO.File.ReadLines(Layout.File(Path.Combine(dir, "images_box.txt"), layout))
            .Select(l => l.Split(' ', StringSplitOptions.RemoveEmptyEntries)).Where(p => p.Length == 5)
            .ToDictionary(p => p[0], p => (int.Parse(p[1]), int.Parse(p[2]), int.Parse(p[3]), int.Parse(p[4])));
        var map = Layout.LabelMap(variants.Values);
        var records = variants.OrderBy(kv => map[kv.Value]).ThenBy(kv => kv.Key, StringComparer.Ordinal)
            .Select(kv => new ImageRecord(Path.Combine(dir, "images", kv.Key + ".jpg"), map[kv.Value],
                boxes.TryGetValue(kv.Key, out var b) ? b : null)).ToList();
        return FromFiles(spec, records);
    }

    /// <summary>MNIST / Fashion-MNIST IDX files (plain or .gz): {train,t10k}-{images-idx3,labels-idx1}-ubyte.</summary>
    public static IDataset IdxImages(DatasetSpec spec, ReaderOptions o)
    {
        var prefix = o.Training ? "train" : "t10k";
        var layout = $"{prefix}-images-idx3-ubyte[.gz] and {prefix}-labels-idx1-ubyte[.gz] (the MNIST IDX format)";
        string Find(string name) => new[] { name + ".gz", name }.Select(n => Path.Combine(o.Root, n)).FirstOrDefault(System.IO.File.Exists)
                                    ?? throw new DataLayoutException(Path.Combine(o.Root, name + "[.gz]"), layout);
        var imagesPath = Find($"{prefix}-images-idx3-ubyte");
        var images = Idx.Read(imagesPath);
        var labels = Idx.Read(Find($"{prefix}-labels-idx1-ubyte"));
        if (images.Shape.Length != 3)
            throw new FormatException($"{imagesPath}: holds an array of {images.Shape.Length} dimension(s) ({string.Join("x", images.Shape)}), images x height x width expected");
        if (labels.Shape.Length != 1)
            throw new FormatException($"{Find($"{prefix}-labels-idx1-ubyte")}: holds an array of {labels.Shape.Length} dimensions ({string.Join("x", labels.Shape)}), one label per image expected");
        if (images.Count != labels.Count) throw new FormatException($"{o.Root}: {images.Count} images but {labels.Count} labels");
        int h = images.Shape[1], w = images.Shape[2];
        if (spec.Shape[1] != h || spec.Shape[2] != w)
            throw new FormatException($"{imagesPath}: images are {h}x{w}, data set {spec.Name} expects {spec.Shape[1]}x{spec.Shape[2]}");
        return new ListDataset<int>(spec, Enumerable.Range(0, images.Count).ToList(), i => $"{imagesPath}#{i}", (i, _) =>
        {
            var values = new float[h * w];
            for (int p = 0; p < values.Length; p++) values[p] = images.Data[i * h * w + p] / 255f;
            return Sample.Dense(values, labels.Data[i]);
        });
    }

    /// <summary>"ID VALUE" lines (VALUE may contain spaces), as CUB and FGVC-Aircraft list files are.</summary>
    private static Dictionary<string, string> IdPairs(string path) =>
        System.IO.File.ReadLines(path).Select(l => l.Trim()).Where(l => l.Length > 0)
            .Select(l => l.Split(' ', 2)).Where(p => p.Length == 2).ToDictionary(p => p[0], p => p[1].Trim(), StringComparer.Ordinal);
}
