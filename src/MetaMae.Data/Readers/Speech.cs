using System.Collections.Concurrent;
using MetaMae.Data.Formats;
using MetaMae.Data.Transforms;

namespace MetaMae.Data.Readers;

/// <summary>An audio file and its class.</summary>
public sealed record AudioRecord(string Path, int Label);

/// <summary>
/// Readers for the DABS speech sets (WAV or Ogg Vorbis), each turned into DABS's (1, 224, 224) log-mel with the set's
/// own mean and std. Long clips are cropped at a random side in pretraining and keep their start otherwise. Every clip
/// is taken at its set's published rate (<see cref="PublishedRates"/>), which DABS's statistics and the log-mel's fixed
/// length assume: a clip stored at another rate (a corpus converted to 44.1 kHz, AudioMNIST downsampled to 16 kHz) is
/// resampled to it, as one's own audio folders are to their sample_rate.
/// </summary>
public static class Speech
{
    private static readonly ConcurrentDictionary<int, LogMel> Transforms = new();

    /// <summary>Each catalog speech set's published sample rate (Hz); spoken-digits is espeak-ng's.</summary>
    public static readonly IReadOnlyDictionary<string, int> PublishedRates = new Dictionary<string, int>
    {
        ["librispeech"] = 16_000, ["audio-mnist"] = 48_000, ["spoken-digits"] = 22_050, ["fluent-speech-act"] = 16_000,
        ["fluent-speech-obj"] = 16_000, ["fluent-speech-loc"] = 16_000, ["google-speech"] = 16_000, ["voxceleb1"] = 16_000,
    };

    public static IDataset FromFiles(DatasetSpec spec, IReadOnlyList<AudioRecord> records, double mean, double std, bool randomCrop)
    {
        int rate = PublishedRates.TryGetValue(spec.Name, out var r) ? r
            : throw new InvalidOperationException($"speech set '{spec.Name}' has no published sample rate");
        var logMel = Transforms.GetOrAdd(rate, x => new LogMel(x));
        return new ListDataset<AudioRecord>(spec, records, a => a.Path, (a, ctx) =>
        {
            var samples = AudioFile.At(AudioFile.Read(a.Path), rate);
            var keepEnd = randomCrop && samples.Length > LogMel.MaxLength && ctx.Random().Next(2) == 0;
            return Sample.Dense(logMel.Compute(LogMel.Fit(samples, keepEnd), mean, std), a.Label);
        });
    }

    private static readonly string[] AudioExtensions = [".wav", ".ogg", ".oga", ".flac"];

    /// <summary>Each clip under <paramref name="dir"/> once, never through a link out of it (<see cref="FolderWalk"/>).</summary>
    private static IEnumerable<string> AudioFiles(string dir) =>
        FolderWalk.Files(dir, f => AudioExtensions.Contains(Path.GetExtension(f).ToLowerInvariant()), recurse: true, new List<string>())
            .Order(StringComparer.Ordinal);

    /// <summary>
    /// LibriSpeech: LibriSpeech/SUBSET/SPEAKER/CHAPTER/SPEAKER-CHAPTER-UTT.wav|ogg. Pretraining reads train-clean-100,
    /// train-clean-360 and train-other-500; transfer reads dev-clean, split per speaker 80/20.
    /// </summary>
    public static IDataset LibriSpeech(DatasetSpec spec, ReaderOptions o)
    {
        const string layout = "LibriSpeech/{train-clean-100,train-clean-360,train-other-500,dev-clean}/SPEAKER/CHAPTER/SPEAKER-CHAPTER-UTT.wav (FLAC converted to WAV)";
        var root = Layout.Directory(Path.Combine(o.Root, "LibriSpeech"), layout);
        var subsets = o.Split == Split.Pretrain ? new[] { "train-clean-100", "train-clean-360", "train-other-500" } : ["dev-clean"];
        var present = subsets.Select(s => Path.Combine(root, s)).Where(System.IO.Directory.Exists).ToList();
        if (present.Count == 0) throw new DataLayoutException(Path.Combine(root, subsets[0]), layout);
        var files = present.SelectMany(AudioFiles).ToList();
        var speakers = files.Select(f => Path.GetFileName(f).Split('-')[0]).ToList();
        var map = Layout.LabelMap(speakers);
        var records = files.Select((f, i) => new AudioRecord(f, map[speakers[i]])).ToList();
        if (o.Split != Split.Pretrain) records = Layout.SplitPerClass(records, r => r.Label, o.Split, 0.8);
        return FromFiles(spec, records, -22.924, 12.587, o.Split == Split.Pretrain);
    }

    public static readonly int[] AudioMnistTrainSpeakers =
        [28, 56, 7, 19, 35, 1, 6, 16, 23, 34, 46, 53, 36, 57, 9, 24, 37, 2, 8, 17, 29, 39, 48, 54, 43, 58, 14, 25, 38, 3, 10, 20, 30, 40, 49, 55,
         12, 47, 59, 15, 27, 41, 4, 11, 21, 31, 44, 50];
    public static readonly int[] AudioMnistTestSpeakers = [26, 52, 60, 18, 32, 42, 5, 13, 22, 33, 45, 51];

    /// <summary>AudioMNIST: AudioMNIST/data/NN/DIGIT_NN_INDEX.wav; DABS's speaker split (48 train+val, 12 test).</summary>
    public static IDataset AudioMnist(DatasetSpec spec, ReaderOptions o)
    {
        const string layout = "AudioMNIST/data/NN/DIGIT_NN_INDEX.wav (NN = speaker 01..60)";
        var root = Layout.Directory(Path.Combine(o.Root, "AudioMNIST", "data"), layout);
        var speakers = o.Training ? AudioMnistTrainSpeakers : AudioMnistTestSpeakers;
        var records = new List<AudioRecord>();
        foreach (var spk in speakers.Order())
        {
            var dir = Path.Combine(root, $"{spk:D2}");
            if (!System.IO.Directory.Exists(dir)) continue;
            foreach (var f in AudioFiles(dir))
            {
                var digit = Path.GetFileNameWithoutExtension(f).Split('_')[0];
                records.Add(new AudioRecord(f, int.TryParse(digit, out var d) ? d : -1));
            }
        }
        if (records.Count == 0) throw new DataLayoutException(Path.Combine(root, "NN"), layout);
        return FromFiles(spec, records, -90.293, 11.799, o.Split == Split.Pretrain);
    }

    public static readonly string[] FluentActions = ["change language", "activate", "deactivate", "increase", "decrease", "bring"];
    public static readonly string[] FluentObjects = ["none", "music", "lights", "volume", "heat", "lamp", "newspaper", "juice", "socks", "shoes", "Chinese", "Korean", "English", "German"];
    public static readonly string[] FluentLocations = ["none", "kitchen", "bedroom", "washroom"];

    /// <summary>Fluent Speech Commands: fluent_speech_commands_dataset/data/{train,valid,test}_data.csv (path, action, object, location).</summary>
    public static IDataset FluentSpeech(DatasetSpec spec, ReaderOptions o, string labelColumn)
    {
        const string layout = "fluent_speech_commands_dataset/{data/train_data.csv, data/valid_data.csv, data/test_data.csv, wavs/...}";
        var root = Layout.Directory(Path.Combine(o.Root, "fluent_speech_commands_dataset"), layout);
        var names = labelColumn switch { "action" => FluentActions, "object" => FluentObjects, "location" => FluentLocations,
            _ => throw new ArgumentException($"label must be action, object or location, not '{labelColumn}'") };
        var csvs = o.Training ? new[] { "train_data.csv", "valid_data.csv" } : ["test_data.csv"];
        var records = new List<AudioRecord>();
        foreach (var csv in csvs)
        {
            var table = CsvTable.Read(Layout.File(Path.Combine(root, "data", csv), layout));
            int path = table.Column("path"), label = table.Column(labelColumn);
            foreach (var row in table.Rows)
                records.Add(new AudioRecord(Path.Combine(root, row.Fields[path]), Array.IndexOf(names, row.Fields[label])));
        }
        return FromFiles(spec, records, -31.809, 13.127, o.Split == Split.Pretrain);
    }

    public static readonly string[] GoogleLabels =
    [
        "eight", "right", "happy", "three", "yes", "up", "no", "stop", "on", "four", "nine", "zero", "down", "go", "six", "two", "left",
        "five", "off", "seven", "one", "cat", "bird", "marvin", "wow", "tree", "dog", "sheila", "bed", "house", "follow", "visual",
        "backward", "forward", "learn", "_background_noise_",
    ];

    /// <summary>Google Speech Commands v0.02: google_speech/LABEL/*.wav with validation_list.txt and testing_list.txt.</summary>
    public static IDataset GoogleSpeech(DatasetSpec spec, ReaderOptions o)
    {
        const string layout = "google_speech/{LABEL/*.wav, validation_list.txt, testing_list.txt}";
        var root = Layout.Directory(Path.Combine(o.Root, "google_speech"), layout);
        var testing = System.IO.File.ReadAllLines(Layout.File(Path.Combine(root, "testing_list.txt"), layout)).Select(l => l.Trim()).Where(l => l.Length > 0).ToList();
        List<string> paths;
        if (o.Training)
        {
            var validation = System.IO.File.ReadAllLines(Layout.File(Path.Combine(root, "validation_list.txt"), layout)).Select(l => l.Trim()).Where(l => l.Length > 0).ToList();
            var excluded = new HashSet<string>(validation.Concat(testing), StringComparer.Ordinal);
            var all = AudioFiles(root).Select(f => Path.GetRelativePath(root, f).Replace('\\', '/'));
            paths = all.Where(p => !excluded.Contains(p)).Concat(validation).Order(StringComparer.Ordinal).ToList();
        }
        else
        {
            paths = testing;
        }
        var records = paths.Select(p => new AudioRecord(Path.Combine(root, p), Array.IndexOf(GoogleLabels, p.Split('/')[0].ToLowerInvariant()))).ToList();
        return FromFiles(spec, records, -46.847, 19.151, o.Split == Split.Pretrain);
    }

    /// <summary>VoxCeleb1 identification: voxceleb1/iden_split.txt ("1|2|3 idXXXXX/VIDEO/NNNNN.wav") and voxceleb1/wav/.</summary>
    public static IDataset VoxCeleb1(DatasetSpec spec, ReaderOptions o)
    {
        const string layout = "voxceleb1/{iden_split.txt, wav/idXXXXX/VIDEO/NNNNN.wav}";
        var root = Layout.Directory(Path.Combine(o.Root, "voxceleb1"), layout);
        var lines = System.IO.File.ReadAllLines(Layout.File(Path.Combine(root, "iden_split.txt"), layout))
            .Select(l => l.Trim().Split(' ')).Where(p => p.Length == 2).ToList();
        var wanted = o.Training ? new[] { "1", "2" } : ["3"];
        var chosen = lines.Where(p => wanted.Contains(p[0])).Select(p => p[1]).ToList();
        var map = Layout.LabelMap(chosen.Select(p => p.Split('/')[0]));
        var records = chosen.Select(p => new AudioRecord(Path.Combine(root, "wav", p), map[p.Split('/')[0]])).ToList();
        return FromFiles(spec, records, -37.075, 19.776, o.Split == Split.Pretrain);
    }
}
