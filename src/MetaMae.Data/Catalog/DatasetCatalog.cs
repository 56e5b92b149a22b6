using MetaMae.Data.Readers;

namespace MetaMae.Data;

/// <summary>A supported data set: its spec and how to open one of its splits from a root directory.</summary>
public sealed record CatalogEntry(DatasetSpec Spec, Func<ReaderOptions, IDataset> Open);

/// <summary>
/// Every data set this project reads, with DABS's shapes, patches, vocabularies, batch sizes, classes and metrics,
/// and the layout each reader expects under its root directory.
/// </summary>
public static class DatasetCatalog
{
    private static readonly List<CatalogEntry> Entries = [];

    private static DatasetSpec Add(string name, string modality, InputKind kind, int[] shape, int[] patch, int vocab, int batch,
        int classes, Metric metric, Role role, string splits, string layout, Func<DatasetSpec, ReaderOptions, IDataset> open,
        string origin = "DABS", int textLength = 0)
    {
        var spec = new DatasetSpec(name, modality, kind, shape, patch, vocab, batch, classes, metric, role, splits, layout, origin, textLength);
        Entries.Add(new CatalogEntry(spec, o => open(spec, o)));
        return spec;
    }

    static DatasetCatalog()
    {
        const InputKind img = InputKind.Image2d, ser = InputKind.Series1d, tok = InputKind.Tokens;
        int[] rgb32 = [3, 32, 32], p4 = [4, 4], spec224 = [1, 224, 224], p16 = [16, 16];
        // Natural images (2-D patches).
        Add("imagenet32", "natural images", img, rgb32, p4, 0, 64, 1000, Metric.Accuracy, Role.Pretrain, "train / val folders",
            "ROOT/train/CLASS/*.JPEG, ROOT/val/CLASS/*.JPEG (resized to 32x32)", (s, o) => Images.ClassFolders(s, o));
        Add("cifar10", "natural images", img, rgb32, p4, 0, 64, 10, Metric.Accuracy, Role.Transfer, "data_batch_1-5 / test_batch",
            "ROOT/cifar-10-batches-bin/*.bin", Images.Cifar10);
        Add("cub", "natural images", img, rgb32, p4, 0, 64, 200, Metric.Accuracy, Role.Transfer, "train_test_split.txt",
            "ROOT/CUB_200_2011/{images.txt,image_class_labels.txt,train_test_split.txt,images/}", Images.Cub200);
        Add("vggflower", "natural images", img, rgb32, p4, 0, 64, 102, Metric.Accuracy, Role.Transfer, "per class 80/20, seed 42",
            "ROOT/flowers102/{imagelabels.mat,jpg/}", Images.Flowers102);
        Add("dtd", "natural images", img, rgb32, p4, 0, 64, 47, Metric.Accuracy, Role.Transfer, "train1+val1 / test1",
            "ROOT/dtd/{labels/,images/}", Images.Dtd);
        Add("traffic-sign", "natural images", img, rgb32, p4, 0, 64, 43, Metric.Accuracy, Role.Transfer, "per class 80/20, seed 42",
            "ROOT/GTSRB/Final_Training/Images/00000..00042/*.ppm", Images.Gtsrb);
        Add("aircraft", "natural images", img, rgb32, p4, 0, 64, 100, Metric.Accuracy, Role.Transfer, "trainval / test",
            "ROOT/fgvc-aircraft-2013b/data/{images_variant_*.txt,images_box.txt,images/}", Images.Aircraft);
        Add("wafer-map", "wafer maps", img, rgb32, p4, 0, 128, 9, Metric.WeightedF1, Role.PretrainAndTransfer,
            "unlabelled for pretraining; labelled 90/10, seed 42", "ROOT/wm811k.npz (see README for the export)", Multispectral.Wafer);
        // Speech (log-mel spectrograms as 2-D patches).
        Add("librispeech", "speech", img, spec224, p16, 0, 64, 40, Metric.Accuracy, Role.PretrainAndTransfer,
            "train-* for pretraining; dev-clean per speaker 80/20", "ROOT/LibriSpeech/SUBSET/SPEAKER/CHAPTER/*.wav", Speech.LibriSpeech);
        Add("audio-mnist", "speech", img, spec224, p16, 0, 64, 10, Metric.Accuracy, Role.Transfer, "DABS speaker lists",
            "ROOT/AudioMNIST/data/NN/DIGIT_NN_I.wav", Speech.AudioMnist);
        Add("spoken-digits", "speech (synthetic)", img, spec224, p16, 0, 64, 10, Metric.Accuracy, Role.PretrainAndTransfer,
            "AudioMNIST speaker lists", "ROOT/AudioMNIST/data/NN/DIGIT_NN_I.wav, made by `metamae data spoken-digits`",
            Speech.AudioMnist, origin: "synthetic (espeak-ng)");
        Add("fluent-speech-act", "speech", img, spec224, p16, 0, 64, 6, Metric.Accuracy, Role.Transfer, "train+valid / test CSVs",
            "ROOT/fluent_speech_commands_dataset/data/*_data.csv", (s, o) => Speech.FluentSpeech(s, o, "action"));
        Add("fluent-speech-obj", "speech", img, spec224, p16, 0, 64, 14, Metric.Accuracy, Role.Transfer, "train+valid / test CSVs",
            "ROOT/fluent_speech_commands_dataset/data/*_data.csv", (s, o) => Speech.FluentSpeech(s, o, "object"));
        Add("fluent-speech-loc", "speech", img, spec224, p16, 0, 64, 4, Metric.Accuracy, Role.Transfer, "train+valid / test CSVs",
            "ROOT/fluent_speech_commands_dataset/data/*_data.csv", (s, o) => Speech.FluentSpeech(s, o, "location"));
        Add("google-speech", "speech", img, spec224, p16, 0, 64, 36, Metric.Accuracy, Role.Transfer, "validation_list / testing_list",
            "ROOT/google_speech/{LABEL/*.wav,validation_list.txt,testing_list.txt}", Speech.GoogleSpeech);
        Add("voxceleb1", "speech", img, spec224, p16, 0, 64, 1251, Metric.Accuracy, Role.Transfer, "iden_split.txt 1+2 / 3",
            "ROOT/voxceleb1/{iden_split.txt,wav/}", Speech.VoxCeleb1);
        // Sensors and tabular (1-D patches).
        Add("pamap2", "wearable sensors", ser, [52, 320], [5], 0, 256, 12, Metric.Accuracy, Role.PretrainAndTransfer,
            "subjects 101-104,107-109 / 105-106", "ROOT/Protocol/subject10X.dat", (s, o) => Pamap2.Read(s, o));
        Add("higgs", "particle physics (tabular)", ser, [1, 28], [1], 0, 256, 2, Metric.BinaryAccuracy, Role.PretrainAndTransfer,
            "DABS files, transfer 90/10; or UCI last 500k as test", "ROOT/particle_physics/higgs{Pretrain,Transfer}.csv or ROOT/HIGGS.csv.gz", Tables.Higgs);
        // Genomics and proteins (token ids).
        Add("genomics", "genomics", tok, [250], [1], 4, 32, 10, Metric.Accuracy, Role.Pretrain, "genomicsPretrain.csv",
            "ROOT/genomics/genomicsPretrain.csv", (s, o) => Sequences.GenomicsCsv(s, o, "ID"));
        Add("genomics-id", "genomics", tok, [250], [1], 4, 64, 10, Metric.Accuracy, Role.Transfer, "90/10, seed 42",
            "ROOT/genomics/genomicsTransferID.csv", (s, o) => Sequences.GenomicsCsv(s, o, "ID"));
        Add("genomics-ood", "genomics", tok, [250], [1], 4, 32, 60, Metric.Accuracy, Role.Transfer, "90/10, seed 42",
            "ROOT/genomics/genomicsTransferOOD.csv", (s, o) => Sequences.GenomicsCsv(s, o, "OOD"));
        Add("pfam", "proteins", tok, [128], [1], 26, 128, 623, Metric.Accuracy, Role.PretrainAndTransfer,
            "pfam_pretrain_train.csv; transfer 90/10", "ROOT/pfam/pfam_pretrain_train.csv, pfam_transfer.csv", (s, o) => Sequences.ProteinCsv(s, o, "pfam"));
        Add("scop", "proteins", tok, [128], [1], 26, 128, 1195, Metric.Accuracy, Role.Transfer, "_train / _valid",
            "ROOT/pfam/transfer/remote_homology_{train,valid}.csv", (s, o) => Sequences.ProteinCsv(s, o, "remote_homology"));
        Add("secondary-structure", "proteins", tok, [128], [1], 26, 128, 4, Metric.PerTokenAccuracy, Role.Transfer, "_train / _valid",
            "ROOT/pfam/transfer/secondary_structure_{train,valid}.csv", (s, o) => Sequences.ProteinCsv(s, o, "secondary_structure"));
        Add("stability", "proteins", tok, [128], [1], 26, 128, 0, Metric.Spearman, Role.Transfer, "_train / _valid",
            "ROOT/pfam/transfer/stability_{train,valid}.csv", (s, o) => Sequences.ProteinCsv(s, o, "stability"));
        Add("fluorescence", "proteins", tok, [128], [1], 26, 128, 0, Metric.Spearman, Role.Transfer, "_train / _valid",
            "ROOT/pfam/transfer/fluorescence_{train,valid}.csv", (s, o) => Sequences.ProteinCsv(s, o, "fluorescence"));
        // Multispectral satellite.
        Add("eurosat", "multispectral satellite", img, [13, 64, 64], [8, 8], 0, 64, 10, Metric.Accuracy, Role.PretrainAndTransfer,
            "90/10, seed 42", "ROOT/EuroSAT_MS/CLASS/*.tif (13-band GeoTIFF)", Multispectral.EuroSat);
        // Image + text.
        Add("mscoco", "captioned images", InputKind.ImageText, [3, 224, 224], p16, 30522, 64, 0, Metric.Accuracy, Role.Pretrain,
            "train2017 / val2017", "ROOT/{annotations/captions_*2017.json,train2017/,val2017/,vocab.txt}", Captions.Coco, textLength: 32);
        Add("vqa", "captioned images", InputKind.ImageText, [3, 224, 224], p16, 30522, 64, 3129, Metric.Accuracy, Role.Transfer,
            "train2014 / val2014", "ROOT/{v2_*2014_questions.json,v2_mscoco_*2014_annotations.json,train2014/,val2014/,vocab.txt}", Captions.Vqa, textLength: 32);

        // Real data sets shipped beside this repository (../shared/data) that stand in for DABS modalities.
        const string real = "real stand-in";
        Add("fashion-mnist", "natural images (grey)", img, [1, 28, 28], p4, 0, 64, 10, Metric.Accuracy, Role.PretrainAndTransfer,
            "train / t10k", "ROOT/{train,t10k}-{images-idx3,labels-idx1}-ubyte.gz", Images.IdxImages, real);
        Add("letter", "tabular", ser, [1, 16], [1], 0, 256, 26, Metric.Accuracy, Role.PretrainAndTransfer, "stratified 80/20, seed 42",
            "ROOT/letter_recognition.csv", (s, o) => Tables.LabelledCsv(s, o, "letter_recognition.csv", "lettr", 1f / 15), real);
        Add("landsat", "multispectral satellite", img, [4, 3, 3], [1, 1], 0, 256, 6, Metric.Accuracy, Role.PretrainAndTransfer,
            "blocks of 100 rows, every fifth to test", "ROOT/landsat_statlog.csv", Tables.Landsat, real);
        Add("splice", "genomics", tok, [60], [1], 4, 64, 3, Metric.Accuracy, Role.Transfer, "stratified 80/20, seed 42",
            "ROOT/splice_junctions.fasta (class= in headers)", (s, o) => Sequences.DnaFasta(s, o, "splice_junctions.fasta"), real);
        Add("fly-upstream", "genomics", tok, [250], [1], 4, 32, 0, Metric.Accuracy, Role.Pretrain, "all (unlabelled)",
            "ROOT/fly_upstream_unlabelled.fa.gz", (s, o) => Sequences.DnaFasta(s, o, "fly_upstream_unlabelled.fa.gz"), real);
        Add("enzyme", "proteins", tok, [128], [1], 26, 128, 6, Metric.Accuracy, Role.PretrainAndTransfer, "stratified 80/20, seed 42",
            "ROOT/enzyme_class.csv (id,label,sequence)", (s, o) => Sequences.LabelledProteinCsv(s, o, "enzyme_class.csv"), real);
        Add("brown", "text", tok, [128], [1], 257, 64, 15, Metric.Accuracy, Role.PretrainAndTransfer, "by document, 1 in 5 to test",
            "ROOT/brown_sentences.csv (genre,doc,sentence)", (s, o) => Sequences.BrownSentences(s, o, "brown_sentences.csv"), real);
    }

    public static IReadOnlyList<CatalogEntry> All => Entries;

    public static CatalogEntry Get(string name) =>
        Entries.FirstOrDefault(e => e.Spec.Name.Equals(name, StringComparison.OrdinalIgnoreCase))
        ?? throw new ArgumentException($"unknown data set '{name}'; supported: {string.Join(", ", Entries.Select(e => e.Spec.Name))}");

    /// <summary>
    /// The entry a run's data set reference names: a catalog entry by name, or one's own data in a generic format
    /// (<see cref="OwnData"/>), its spec made from the data.
    /// </summary>
    public static CatalogEntry Resolve(Protocol.DatasetRef d, InputStatistics? statistics = null)
    {
        if (d.Format is null) return Get(d.Name);
        if (Entries.Any(e => e.Spec.Name.Equals(d.Name, StringComparison.OrdinalIgnoreCase)))
            throw new ArgumentException($"'{d.Name}' is the name of a catalog data set; give your own data another name");
        return OwnData.Resolve(d, statistics);
    }

    /// <summary>
    /// Opens a split of a run's data set reference (a catalog set under its root, or one's own data, standardised with
    /// <paramref name="statistics"/> when given: a checkpoint's, for probing).
    /// </summary>
    public static IDataset Open(Protocol.DatasetRef d, Split split, InputStatistics? statistics = null)
    {
        if (d.Format is null) return Open(d.Name, new ReaderOptions(EmbeddedData.Resolve(d.Root), split));
        var entry = Resolve(d, statistics);
        if (split == Split.Pretrain && entry.Spec.Role == Role.Transfer)
            throw new ArgumentException($"data set '{d.Name}' is a transfer set and cannot be pretrained on");
        return entry.Open(new ReaderOptions(d.Path!, split));
    }

    /// <summary>Opens a split, checking that a requested shape (from a config) matches the catalog's.</summary>
    public static IDataset Open(string name, ReaderOptions options, int[]? expectedShape = null)
    {
        var entry = Get(name);
        if (expectedShape is not null && !expectedShape.SequenceEqual(entry.Spec.Shape))
            throw new ArgumentException($"data set '{name}' has samples of shape {string.Join("x", entry.Spec.Shape)}, " +
                                        $"the configuration asks for {string.Join("x", expectedShape)}");
        if (options.Split == Split.Pretrain && entry.Spec.Role == Role.Transfer)
            throw new ArgumentException($"data set '{name}' is a transfer set; pretraining sets: {string.Join(", ", Entries.Where(e => e.Spec.Role != Role.Transfer).Select(e => e.Spec.Name))}");
        return entry.Open(options);
    }
}
