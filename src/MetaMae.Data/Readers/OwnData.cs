using System.Collections.Concurrent;
using System.Globalization;
using MetaMae.Data.Formats;
using MetaMae.Data.Transforms;
using MetaMae.Protocol;
using Microsoft.ML.Tokenizers;

namespace MetaMae.Data.Readers;

/// <summary>
/// One's own data set, in a generic format instead of a catalog entry's fixed layout: <c>table</c> (CSV/TSV),
/// <c>sequences</c> (FASTA or CSV; DNA or protein), <c>text</c> (CSV with label and text, or one text a line),
/// <c>audio-folder</c> and <c>image-folder</c> (a folder per class, or files without classes). The spec comes from the
/// data: classes from the labels found, the number of features from the header, and, where the reader standardises,
/// statistics of the pretraining split only. Data without labels is for pretraining only. Labelled data is split by a
/// seeded stratified shuffle (<see cref="DatasetRef.TestFraction"/>, 0.2 by default); pretraining reads the train part,
/// so test records never reach the encoder. Reports name the set by the user's name.
/// </summary>
public static class OwnData
{
    public static readonly string[] Formats = ["table", "sequences", "text", "audio-folder", "image-folder"];

    /// <summary>Each format with what "path" holds and its keys (with defaults), for `data list` and the README.</summary>
    public static readonly IReadOnlyList<(string Format, string Path, string Keys)> Help =
    [
        ("table", "CSV or TSV, a header row; numeric feature columns", "label_column (label; absent: unlabelled), normalize (true), test_fraction (0.2)"),
        ("sequences", "FASTA (class= or label= in headers) or CSV", "alphabet (dna | protein, required), length (128), label_column (label), text_column (sequence), test_fraction (0.2)"),
        ("text", "CSV with label and text columns, or .txt one text a line", "tokenizer (bytes | wordpiece), vocab (vocab.txt for wordpiece), length (128), label_column (label), text_column (text), test_fraction (0.2)"),
        ("audio-folder", "folder: CLASS/*.wav|ogg, or clips without class folders", "sample_rate (16000), seconds (1), mels (64), normalize (true), test_fraction (0.2)"),
        ("image-folder", "folder: CLASS/*.jpg|png, or images without class folders", "image_size (32), channels (3 | 1), test_fraction (0.2)"),
    ];

    private static readonly ConcurrentDictionary<string, Lazy<CatalogEntry>> Resolved = new();

    /// <summary>
    /// The first option of <paramref name="d"/> out of range, as (key, what is wrong), or null: the one check of these
    /// keys, made when data is resolved and, naming the config key, when a run's configuration is validated.
    /// </summary>
    public static (string Key, string Message)? OptionProblem(DatasetRef d)
    {
        static string N(double v) => v.ToString(CultureInfo.InvariantCulture);
        if (d.Length is { } length && length is < 2 or > 65_536) return ("length", $"must be in [2, 65536], got {length}");
        if (d.SampleRate is { } rate && rate is < 1000 or > 384_000) return ("sample_rate", $"must be in [1000, 384000] Hz, got {rate}");
        if (d.Seconds is { } seconds && !(double.IsFinite(seconds) && seconds is > 0 and <= 600))
            return ("seconds", $"must be a finite number in (0, 600], got {N(seconds)}");
        if (d.Mels is { } mels && (mels is < 16 or > 512 || mels % 8 != 0)) return ("mels", $"must be a multiple of 8 in [16, 512], got {mels}");
        if (d.ImageSize is { } size && (size is < 8 or > 1024 || size % 8 != 0)) return ("image_size", $"must be a multiple of 8 in [8, 1024], got {size}");
        if (d.Channels is { } channels && channels is not (1 or 3)) return ("channels", $"must be 1 or 3, got {channels}");
        if (d.TestFraction is { } fraction && !(double.IsFinite(fraction) && fraction is > 0 and < 1))
            return ("test_fraction", $"must be a finite number in (0, 1), got {N(fraction)}");
        if (d.Alphabet is { } alphabet && alphabet is not ("dna" or "protein")) return ("alphabet", $"'{alphabet}' is not allowed; allowed: dna, protein");
        if (d.Tokenizer is { } tokenizer && tokenizer is not ("bytes" or "wordpiece")) return ("tokenizer", $"'{tokenizer}' is not allowed; allowed: bytes, wordpiece");
        return null;
    }

    /// <summary>
    /// The catalog entry of <paramref name="d"/>, made once per process for the same settings and file (size and
    /// modification time): every actor that asks for the spec or a split shares one reading of a large file.
    /// </summary>
    /// <param name="statistics">
    /// The standardisation to apply instead of computing one (a checkpoint's, so a probe set is standardised as the
    /// encoder's pretraining data was); ignored where the shapes differ or normalize is false.
    /// </param>
    public static CatalogEntry Resolve(DatasetRef d, InputStatistics? statistics = null)
    {
        if (d.Format is not { } format || !Formats.Contains(format))
            throw new ArgumentException($"data set '{d.Name}': format '{d.Format}' is not one of {string.Join(", ", Formats)}");
        if (string.IsNullOrWhiteSpace(d.Path)) throw new ArgumentException($"data set '{d.Name}': format {format} needs \"path\" (a {(format.EndsWith("folder") ? "folder" : "file")})");
        if (OptionProblem(d) is { } problem) throw new ArgumentException($"data set '{d.Name}': {problem.Key} {problem.Message}");
        var path = System.IO.Path.GetFullPath(d.Path);
        var stamp = File.Exists(path) ? $"{new FileInfo(path).Length}:{File.GetLastWriteTimeUtc(path).Ticks}"
            : Directory.Exists(path) ? Directory.GetLastWriteTimeUtc(path).Ticks.ToString(CultureInfo.InvariantCulture) : "missing";
        var key = System.Text.Json.JsonSerializer.Serialize(d with { MaxTrain = null, MaxTest = null, Root = "" }) + stamp +
                  (statistics is null ? "" : System.Text.Json.JsonSerializer.Serialize(statistics));
        var lazy = Resolved.GetOrAdd(key, _ => new Lazy<CatalogEntry>(() => format switch
        {
            "table" => Table(d, path, statistics),
            "sequences" => SequenceFile(d, path),
            "text" => TextFile(d, path),
            "audio-folder" => AudioFolder(d, path, statistics),
            _ => ImageFolder(d, path),
        }));
        try
        {
            return lazy.Value;
        }
        catch
        {
            Resolved.TryRemove(key, out _); // a fixed file is read again next time
            throw;
        }
    }

    private static double TestFraction(DatasetRef d) => d.TestFraction ?? 0.2;

    /// <summary>A record's class number, or -1 for data without labels; an empty label in labelled data is the record's fault.</summary>
    private static float ClassOf(IReadOnlyDictionary<string, int> map, string? label) =>
        map.Count == 0 ? -1 : label is { Length: > 0 } l ? map[l] : throw new FormatException("the label is empty");

    /// <summary>A CSV, or a TSV by its extension (.tsv, .tab), with a header row.</summary>
    private static CsvTable ReadTable(string path)
    {
        var ext = System.IO.Path.GetExtension(path).ToLowerInvariant();
        return CsvTable.Read(path, hasHeader: true, delimiter: ext is ".tsv" or ".tab" ? '\t' : ',');
    }

    /// <summary>Records of a split: labelled data stratified (pretraining = train), unlabelled data all for pretraining.</summary>
    private static List<T> Part<T>(DatasetRef d, IReadOnlyList<T> records, Func<T, string?> label, bool labelled, Split split)
    {
        if (!labelled)
        {
            if (split != Split.Pretrain) throw new ArgumentException($"data set '{d.Name}' has no labels, so it cannot be probed; use it for pretraining");
            return records.ToList();
        }
        return Layout.SplitStratified(records, label, split == Split.Pretrain ? Split.Train : split, 1 - TestFraction(d));
    }

    private static DatasetSpec Spec(DatasetRef d, string modality, InputKind kind, int[] shape, int[] patch, int vocab, int batch, int classes,
        string path, string layout) =>
        new(d.Name, modality, kind, shape, patch, vocab, batch, classes, Metric.Accuracy, classes > 0 ? Role.PretrainAndTransfer : Role.Pretrain,
            classes > 0 ? $"stratified {1 - TestFraction(d):0.##}/{TestFraction(d):0.##}, seed {Layout.SplitSeed}" : "all (unlabelled)",
            layout, $"your data: {path}");

    // ---------------------------------------------------------------- table

    /// <summary>
    /// CSV (or TSV by extension) with a header row: the label column (label_column, default "label"; absent =
    /// unlabelled), every other column a numeric feature, one token per feature. normalize (default true): each
    /// feature standardised with the mean and standard deviation of the pretraining split's parseable values.
    /// </summary>
    private static CatalogEntry Table(DatasetRef d, string path, InputStatistics? given)
    {
        Layout.File(path, "a CSV (or .tsv) file with a header row: a label column and numeric feature columns");
        var table = ReadTable(path);
        if (table.Header.Length == 0 || table.Header.All(string.IsNullOrWhiteSpace))
            throw new FormatException($"{path}: the file is empty; a header row, then one record a line, expected");
        if (table.Header.Length == 1 && new[] { ';', '\t', '|' }.FirstOrDefault(c => table.Header[0].Contains(c)) is var found and not '\0')
            throw new FormatException($"{path}: the header is one column '{table.Header[0]}': the file seems to be delimited by " +
                                      $"{(found == '\t' ? "tabs" : $"'{found}'")}, and this reader takes ',' (tabs in a .tsv or .tab file)");
        if (table.Rows.Count == 0) throw new FormatException($"{path}: a header row and no records");
        int labelAt = LabelColumn(d, table, "label");
        var features = Enumerable.Range(0, table.Header.Length).Where(i => i != labelAt).ToArray();
        if (features.Length == 0) throw new FormatException($"{path}: no feature columns besides the label '{table.Header[labelAt]}'");
        string? Label(CsvRow r) => labelAt >= 0 && r.Fields.Length > labelAt ? r.Fields[labelAt].Trim() : null;
        var map = labelAt >= 0 ? Layout.LabelMap(table.Rows.Select(Label).Where(l => !string.IsNullOrEmpty(l))!) : [];
        bool labelled = map.Count > 0;
        if (map.Count == 1)
            throw new FormatException($"{path}: the label column '{table.Header[labelAt]}' holds one class ('{map.Keys.Single()}') in every record, " +
                                      "so a probe would score 1.0 whatever it learned; give records of at least two classes, or name no label column to pretrain unlabelled");
        InputStatistics? stats = null;
        if (d.Normalize ?? true)
            stats = given?.Mean.Length == features.Length ? given
                : Moments(Part(d, table.Rows, Label, labelled, Split.Pretrain), r => ParseRow(r, features, table.Header), features.Length,
                    path, r => $"line {r.Line}");
        var spec = Spec(d, "table", InputKind.Series1d, [1, features.Length], [1], 0, 256, map.Count, path,
            $"{path}: header row; {(labelAt >= 0 ? $"label column '{table.Header[labelAt]}', " : "no label column, ")}{features.Length} numeric features")
            with { Statistics = stats };
        return new CatalogEntry(spec, o => new ListDataset<CsvRow>(spec, Part(d, table.Rows, Label, labelled, o.Split), r => $"{path}:{r.Line}", (r, _) =>
        {
            if (r.Fields.Length != table.Header.Length) throw new FormatException($"{r.Fields.Length} fields, the header has {table.Header.Length}");
            var values = ParseRow(r, features, table.Header);
            if (stats is not null)
                for (int i = 0; i < values.Length; i++) values[i] = (values[i] - stats.Mean[i]) / stats.Std[i];
            return Sample.Dense(values, ClassOf(map, Label(r)));
        }));
    }

    private static float[] ParseRow(CsvRow r, int[] features, string[] header)
    {
        var values = new float[features.Length];
        for (int i = 0; i < features.Length; i++)
        {
            var text = r.Fields.Length > features[i] ? r.Fields[features[i]].Trim().Trim('"') : "";
            if (!float.TryParse(text, NumberStyles.Float, CultureInfo.InvariantCulture, out var v) || !float.IsFinite(v))
                throw new FormatException($"column '{header[features[i]]}' holds '{text}', not a finite number");
            values[i] = v;
        }
        return values;
    }

    /// <summary>
    /// Mean and standard deviation per feature over the records that decode; a constant feature gets std 1. No readable
    /// record, or every feature constant (nothing to learn), is refused naming the file and the first record's fault.
    /// </summary>
    private static InputStatistics Moments<T>(IEnumerable<T> records, Func<T, float[]> decode, int dim, string path, Func<T, string> describe)
    {
        var sum = new double[dim];
        var squares = new double[dim];
        int n = 0, bad = 0;
        string? firstFault = null;
        foreach (var r in records)
        {
            float[] v;
            try
            {
                v = decode(r);
            }
            catch (Exception e) when (e is FormatException or InvalidDataException or IOException)
            {
                bad++;
                firstFault ??= $"{describe(r)}: {e.Message}";
                continue; // a bad record is counted and skipped where it is read; it does not move the statistics
            }
            for (int i = 0; i < dim; i++)
            {
                sum[i] += v[i];
                squares[i] += (double)v[i] * v[i];
            }
            n++;
        }
        if (n == 0)
            throw new InvalidDataException($"{path}: none of the {bad} pretraining records is readable, so no normalisation statistics; " +
                                           $"the first: {firstFault ?? "there are none"}");
        var mean = sum.Select(s => (float)(s / n)).ToArray();
        var spread = squares.Select((q, i) => Math.Sqrt(Math.Max(0, q / n - (double)mean[i] * mean[i]))).ToArray();
        if (n > 1 && spread.All(s => s <= 1e-8))
            throw new InvalidDataException($"{path}: every feature is constant over the {n} readable pretraining records: there is nothing to learn");
        var std = spread.Select(s => s > 1e-8 ? (float)s : 1f).ToArray();
        return new InputStatistics(mean, std, n);
    }

    private static int LabelColumn(DatasetRef d, CsvTable table, string fallback)
    {
        var name = d.LabelColumn ?? fallback;
        int at = Array.FindIndex(table.Header, h => string.Equals(h.Trim(), name, StringComparison.OrdinalIgnoreCase));
        if (at < 0 && d.LabelColumn is not null)
            throw new FormatException($"{table.Path}: no label column '{name}'; columns are {string.Join(", ", table.Header)}");
        return at;
    }

    // ---------------------------------------------------------------- sequences

    /// <summary>DNA with N (id 0) for padding and ambiguous bases: A, C, G, T are ids 1..4.</summary>
    public const string DnaWithN = "NACGT";

    /// <summary>
    /// FASTA (label from a class= or label= header attribute) or CSV (label_column, default "label"; text_column,
    /// default "sequence"); alphabet dna (N, A, C, G, T; other IUPAC codes read as N) or protein (DABS's 26 letters, X
    /// pads). length tokens (default 128): longer sequences give one window (random per epoch in pretraining, the first
    /// otherwise), shorter ones are padded.
    /// </summary>
    private static CatalogEntry SequenceFile(DatasetRef d, string path)
    {
        Layout.File(path, "a FASTA file (.fa, .fasta, .fa.gz; class=LABEL in headers) or a CSV with label and sequence columns");
        var alphabetName = d.Alphabet ?? throw new ArgumentException($"data set '{d.Name}': sequences need \"alphabet\": dna or protein");
        var (alphabet, pad) = alphabetName switch
        {
            "dna" => (DnaWithN, 'N'),
            _ => (Sequences.AminoAcids, 'X'), // protein (OptionProblem allows nothing else)
        };
        int length = d.Length ?? 128;
        bool csv = path.EndsWith(".csv", StringComparison.OrdinalIgnoreCase) || path.EndsWith(".csv.gz", StringComparison.OrdinalIgnoreCase);
        var records = csv ? FromCsv(d, path, "sequence")
            : Fasta.Read(path).Select(r => new TextRecord(r.Line, r.Sequence, r.Attribute("class") ?? r.Attribute("label"), r.Problem)).ToList();
        // Sequences of the other alphabet would train on padding alone (a protein FASTA read as DNA once did, silently).
        var letters = records.Where(r => r.Problem is null).Take(200).SelectMany(r => r.Text.Where(char.IsLetter)).ToList();
        var native = alphabetName == "dna" ? "ACGTNacgtn" : Sequences.AminoAcids + Sequences.AminoAcids.ToLowerInvariant();
        if (letters.Count > 0 && letters.Count(c => !native.Contains(c)) is var outside && outside > letters.Count / 2)
            throw new FormatException($"{path}: {100.0 * outside / letters.Count:0}% of the letters of its first sequences are not in the {alphabetName} alphabet " +
                                      $"({(alphabetName == "dna" ? "A, C, G, T, N" : "DABS's 26 letters")}); they would be read as padding. " +
                                      $"Is it {(alphabetName == "dna" ? "protein" : "dna")}? Set alphabet accordingly");
        var map = Layout.LabelMap(records.Select(r => r.Label).Where(l => !string.IsNullOrEmpty(l))!);
        bool labelled = map.Count > 0;
        var spec = Spec(d, $"{alphabetName} sequences", InputKind.Tokens, [length], [1], alphabet.Length, 64, map.Count, path,
            $"{path}: {(csv ? "CSV with label and sequence columns" : "FASTA")}, {length} tokens of {alphabet}");
        return new CatalogEntry(spec, o => new ListDataset<TextRecord>(spec, Part(d, records, r => r.Label, labelled, o.Split),
            r => $"{path}:{r.Line}", (r, ctx) =>
            {
                var seq = r.Text.Trim();
                if (seq.Length == 0) throw new FormatException("empty sequence");
                if (seq.Length > length)
                {
                    int start = o.Split == Split.Pretrain ? ctx.Random().Next(seq.Length - length + 1) : 0;
                    seq = seq.Substring(start, length);
                }
                if (alphabetName == "dna") seq = string.Concat(seq.Select(c => "ACGTacgt".Contains(c) ? c : char.IsLetter(c) ? 'N' : c));
                return Sample.Tokens(Sequences.Encode(seq, alphabet, length, pad), ClassOf(map, r.Label));
            }));
    }

    /// <summary>A text or sequence with its line, label (null: none) and why it cannot be read (null: it can).</summary>
    private sealed record TextRecord(int Line, string Text, string? Label, string? Problem) : IRecordProblem;

    private static List<TextRecord> FromCsv(DatasetRef d, string path, string textColumn)
    {
        var table = ReadTable(path);
        int labelAt = LabelColumn(d, table, "label"), textAt = table.Column(d.TextColumn ?? textColumn);
        return table.Rows.Select(r => new TextRecord(r.Line, r.Fields.Length > textAt ? r.Fields[textAt] : "",
            labelAt >= 0 && r.Fields.Length > labelAt ? r.Fields[labelAt].Trim() : null, r.Problem)).ToList();
    }

    // ---------------------------------------------------------------- text

    /// <summary>
    /// CSV (label_column, default "label"; text_column, default "text") or a plain .txt file, one text a line
    /// (unlabelled). tokenizer bytes (UTF-8 bytes, vocabulary 257, 0 pads) or wordpiece (BERT's, vocab = a vocab.txt);
    /// length tokens (default 128).
    /// </summary>
    private static CatalogEntry TextFile(DatasetRef d, string path)
    {
        Layout.File(path, "a CSV with label and text columns, or a .txt file with one text a line");
        int length = d.Length ?? 128;
        var records = new List<TextRecord>();
        if (path.EndsWith(".txt", StringComparison.OrdinalIgnoreCase) || path.EndsWith(".txt.gz", StringComparison.OrdinalIgnoreCase))
        {
            using var reader = CsvTable.Open(path);
            int line = 0;
            for (var text = reader.ReadLine(); text is not null; text = reader.ReadLine())
            {
                line++;
                if (text.Trim().Length > 0)
                    records.Add(new TextRecord(line, text, null, text.Contains(LineLimitedReader.Marker) ? "the line is longer than the reader's limit" : null));
            }
        }
        else records = FromCsv(d, path, "text");
        var map = Layout.LabelMap(records.Select(r => r.Label).Where(l => !string.IsNullOrEmpty(l))!);
        bool labelled = map.Count > 0;
        Func<string, long[]> encode;
        int vocab;
        if (d.Tokenizer == "wordpiece")
        {
            var vocabPath = Layout.File(d.Vocab ?? throw new ArgumentException($"data set '{d.Name}': tokenizer wordpiece needs \"vocab\" (a vocab.txt file)"),
                "vocab.txt: one WordPiece token a line (BERT's layout)");
            var tokenizer = BertTokenizer.Create(vocabPath, new BertOptions { LowerCaseBeforeTokenization = true });
            vocab = File.ReadLines(vocabPath).Count();
            encode = t => Captions.Encode(tokenizer, t, length);
        }
        else // bytes, the default
        {
            encode = t => Sequences.EncodeBytes(t, length);
            vocab = 257;
        }
        var spec = Spec(d, "text", InputKind.Tokens, [length], [1], vocab, 64, map.Count, path,
            $"{path}: {(labelled ? "label and text columns" : "texts")}, {length} {d.Tokenizer ?? "bytes"} tokens");
        return new CatalogEntry(spec, o => new ListDataset<TextRecord>(spec, Part(d, records, r => r.Label, labelled, o.Split),
            r => $"{path}:{r.Line}", (r, _) =>
            {
                if (r.Text.Trim().Length == 0) throw new FormatException("empty text");
                return Sample.Tokens(encode(r.Text), ClassOf(map, r.Label));
            }));
    }

    // ---------------------------------------------------------------- folders

    private static readonly string[] AudioExtensions = [".wav", ".ogg", ".oga"];
    private static readonly string[] ImageExtensions = [".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".ppm", ".pgm"];

    /// <summary>
    /// Files with one of <paramref name="extensions"/>: ROOT/CLASS/... (a folder per class, labelled by the folder's
    /// name) when ROOT's sub-folders hold them; otherwise every such file under ROOT, unlabelled.
    /// </summary>
    private static (List<(string Path, string? Label)> Files, bool Labelled, List<string> Skipped) FolderFiles(string root, string[] extensions, string what)
    {
        Layout.Directory(root, $"ROOT/CLASS/*.{what} (a folder per class), or {what} files anywhere under ROOT (unlabelled)");
        bool Wanted(string f) => extensions.Contains(System.IO.Path.GetExtension(f).ToLowerInvariant());
        // Each file once, by its real path, never through a link out of ROOT (FolderWalk): a link loop once made 30
        // files 10,824 records, test files part of pretraining and images of the wrong class.
        var skipped = new List<string>();
        var all = FolderWalk.Files(root, Wanted, recurse: true, skipped).Order(StringComparer.Ordinal).ToList();
        var classes = Directory.GetDirectories(root).Order(StringComparer.Ordinal)
            .Where(c => all.Any(f => f.StartsWith(c + System.IO.Path.DirectorySeparatorChar, StringComparison.Ordinal))).ToList();
        List<(string, string?)> files = classes.Count > 0
            ? classes.SelectMany(c => all.Where(f => f.StartsWith(c + System.IO.Path.DirectorySeparatorChar, StringComparison.Ordinal))
                .Select(f => (f, (string?)System.IO.Path.GetFileName(c)))).ToList()
            : all.Select(f => (f, (string?)null)).ToList();
        if (files.Count == 0) throw new DataLayoutException(System.IO.Path.Combine(root, "CLASS"), $"{what} files ({string.Join(", ", extensions)}), in a folder per class or not");
        // Files directly in ROOT beside class folders have no class: they are not silently given one.
        return (files, classes.Count > 0, skipped);
    }

    /// <summary>
    /// audio-folder: WAV or Ogg clips; each resampled to sample_rate (default 16 kHz), cut or padded to seconds
    /// (default 1), and turned into a square log-mel of mels bands (default 64) by as many frames, patches of mels/8.
    /// normalize (default true): standardised with the mean and standard deviation of the log-mel values of up to 256
    /// pretraining clips (the DABS readers use each corpus's published values instead).
    /// </summary>
    private static CatalogEntry AudioFolder(DatasetRef d, string path, InputStatistics? given)
    {
        int rate = d.SampleRate ?? 16_000, mels = d.Mels ?? 64;
        double seconds = d.Seconds ?? 1.0;
        var (files, labelled, skipped) = FolderFiles(path, AudioExtensions, "wav|ogg");
        var map = labelled ? Layout.LabelMap(files.Select(f => f.Label!)) : [];
        var transform = LogMel.Square(rate, seconds, mels);
        float[] Clip(string file, Random? crop)
        {
            var audio = AudioFile.Read(file);
            var samples = AudioFile.At(audio, rate);
            int offset = crop is not null && samples.Length > transform.Length ? crop.Next(samples.Length - transform.Length + 1) : 0;
            return LogMel.Fit(samples.AsSpan(offset), keepEnd: false, transform.Length);
        }
        InputStatistics? stats = null;
        if ((d.Normalize ?? true) && given?.Mean.Length == 1) stats = given;
        else if (d.Normalize ?? true)
        {
            var pretrain = Part(d, files, f => f.Label, labelled, Split.Pretrain);
            if (pretrain.Count == 0)
                throw new InvalidDataException($"{path}: the pretraining (train) part has no clips: each class keeps {1 - TestFraction(d):P0} " +
                                               "of its clips, rounded down, so classes of a single clip have none; add clips or lower test_fraction");
            var sample = Layout.Shuffled(pretrain.Count, Layout.SplitSeed).Take(256).Select(i => pretrain[i].Path).ToList();
            var each = sample.AsParallel().AsOrdered().Select(f =>
            {
                try
                {
                    var v = transform.Compute(Clip(f, null), 0, 1);
                    double s = 0, q = 0;
                    foreach (var x in v) { s += x; q += (double)x * x; }
                    return (Ok: true, Sum: s, Squares: q, Count: v.Length);
                }
                catch (Exception e) when (e is FormatException or IOException or InvalidDataException)
                {
                    return (Ok: false, Sum: 0.0, Squares: 0.0, Count: 0);
                }
            }).Where(x => x.Ok).ToList();
            if (each.Count == 0) throw new InvalidDataException($"{path}: no readable clip to compute the normalisation statistics from");
            double n = each.Sum(x => (double)x.Count), mean = each.Sum(x => x.Sum) / n;
            double std = Math.Sqrt(Math.Max(0, each.Sum(x => x.Squares) / n - mean * mean));
            stats = new InputStatistics([(float)mean], [std > 1e-8 ? (float)std : 1f], each.Count);
        }
        var spec = Spec(d, $"audio ({rate} Hz, {seconds:0.###} s, {mels} mel bands)", InputKind.Image2d, [1, mels, mels], [mels / 8, mels / 8], 0, 64,
            map.Count, path, $"{path}/{(labelled ? "CLASS/" : "")}*.wav|ogg") with { Statistics = stats };
        return new CatalogEntry(spec, o => new ListDataset<(string Path, string? Label)>(spec, Part(d, files, f => f.Label, labelled, o.Split), f => f.Path,
            (f, ctx) => Sample.Dense(transform.Compute(Clip(f.Path, o.Split == Split.Pretrain ? ctx.Random() : null),
                stats?.Mean[0] ?? 0, stats?.Std[0] ?? 1), ClassOf(map, f.Label))) { Notes = skipped });
    }

    /// <summary>
    /// image-folder: images (JPEG, PNG, BMP, GIF, WebP, PPM) resized to image_size (default 32) square, channels 3
    /// (RGB) or 1 (grey, the mean of R, G, B), values in [0, 1]; patches of image_size/8.
    /// </summary>
    private static CatalogEntry ImageFolder(DatasetRef d, string path)
    {
        int size = d.ImageSize ?? 32, channels = d.Channels ?? 3;
        var (files, labelled, skipped) = FolderFiles(path, ImageExtensions, "jpg|png");
        var map = labelled ? Layout.LabelMap(files.Select(f => f.Label!)) : [];
        var spec = Spec(d, $"images ({(channels == 3 ? "RGB" : "grey")})", InputKind.Image2d, [channels, size, size], [size / 8, size / 8], 0, 64,
            map.Count, path, $"{path}/{(labelled ? "CLASS/" : "")}*.jpg|png (resized to {size}x{size})");
        return new CatalogEntry(spec, o => new ListDataset<(string Path, string? Label)>(spec, Part(d, files, f => f.Label, labelled, o.Split), f => f.Path,
            (f, _) =>
            {
                var rgb = ImageDecoder.DecodeRgb(File.ReadAllBytes(f.Path), size, size);
                if (channels == 1)
                {
                    var grey = new float[size * size];
                    for (int i = 0; i < grey.Length; i++) grey[i] = (rgb[i] + rgb[size * size + i] + rgb[2 * size * size + i]) / 3f;
                    rgb = grey;
                }
                return Sample.Dense(rgb, ClassOf(map, f.Label));
            }) { Notes = skipped });
    }
}
