using System.Globalization;
using System.Text;
using MetaMae.Data.Formats;

namespace MetaMae.Data.Readers;

/// <summary>Token data: DNA, proteins and text, as ids below the data set's vocabulary.</summary>
public static class Sequences
{
    public const string Bases = "ACGT";
    /// <summary>DABS's 26-letter amino-acid vocabulary; X (id 0) also pads.</summary>
    public const string AminoAcids = "XARNDCQEGHILKMFPSTWYVUOBZJ";

    public static long[] Encode(string sequence, string alphabet, int length, char? pad, bool ignoreCase = true)
    {
        if (sequence.Length < length && pad is null)
            throw new FormatException($"sequence of {sequence.Length} is shorter than {length}");
        var ids = new long[length];
        for (int i = 0; i < length; i++)
        {
            char c = i < sequence.Length ? sequence[i] : pad!.Value;
            if (ignoreCase) c = char.ToUpperInvariant(c);
            int id = alphabet.IndexOf(c);
            if (id < 0) throw new FormatException($"unknown token '{c}' at position {i} (vocabulary {alphabet})");
            ids[i] = id;
        }
        return ids;
    }

    /// <summary>
    /// DABS genomics CSVs: genomics/genomics{Pretrain,TransferID,TransferOOD}.csv; column 3 the label (OOD labels
    /// start at 10), column 4 the sequence as a bytes literal b'ACGT...' of which 250 bases are used. Transfer files
    /// are split 90/10 after a seeded shuffle.
    /// </summary>
    public static IDataset GenomicsCsv(DatasetSpec spec, ReaderOptions o, string variant)
    {
        const string layout = "genomics/genomicsPretrain.csv, genomicsTransferID.csv, genomicsTransferOOD.csv (DABS)";
        var file = o.Split == Split.Pretrain ? "genomicsPretrain.csv" : $"genomicsTransfer{variant}.csv";
        var path = Layout.File(Path.Combine(o.Root, "genomics", file), layout);
        var rows = CsvTable.Read(path).Rows;
        if (o.Split != Split.Pretrain) rows = Layout.SplitShuffled(rows, o.Split, 0.9);
        int offset = variant == "OOD" ? 10 : 0;
        return new ListDataset<CsvRow>(spec, rows, r => $"{path}:{r.Line}", (r, _) =>
        {
            if (r.Fields.Length < 4) throw new FormatException($"{r.Fields.Length} columns, expected at least 4");
            var seq = r.Fields[3];
            if (seq.StartsWith("b'", StringComparison.Ordinal)) seq = seq[2..];
            var label = int.Parse(r.Fields[2], CultureInfo.InvariantCulture) - offset;
            return Sample.Tokens(Encode(seq, Bases, 250, null), label);
        });
    }

    /// <summary>
    /// DNA in FASTA: a label from the header's class= (or label=) attribute, mapped in sorted order; unlabelled files
    /// get -1. Sequences longer than the spec's length give one window: random per epoch in pretraining, the first
    /// otherwise. Ambiguous bases (N, R, ...) make a record bad: the vocabulary is A, C, G, T.
    /// </summary>
    public static IDataset DnaFasta(DatasetSpec spec, ReaderOptions o, string file, double trainFraction = 0.8)
    {
        var path = Layout.File(Path.Combine(o.Root, file), $"{file}: FASTA, optional class=LABEL in headers");
        var records = Fasta.Read(path);
        return FastaDataset(spec, o, path, records, Bases, null, trainFraction);
    }

    /// <summary>Proteins in FASTA (label= or class= in the header), padded with X / truncated to the spec's length.</summary>
    public static IDataset ProteinFasta(DatasetSpec spec, ReaderOptions o, string file)
    {
        var path = Layout.File(Path.Combine(o.Root, file), $"{file}: FASTA, label=LABEL in headers");
        return FastaDataset(spec, o, path, Fasta.Read(path), AminoAcids, 'X', 0.8);
    }

    private static IDataset FastaDataset(DatasetSpec spec, ReaderOptions o, string path, List<FastaRecord> records, string alphabet,
        char? pad, double trainFraction)
    {
        string? Label(FastaRecord r) => r.Attribute("class") ?? r.Attribute("label");
        var map = Layout.LabelMap(records.Select(Label).Where(l => l is not null)!);
        var chosen = map.Count == 0 && o.Split == Split.Pretrain ? records : Layout.SplitStratified(records, Label, o.Split, trainFraction);
        int length = spec.Shape[^1];
        return new ListDataset<FastaRecord>(spec, chosen, r => $"{path}:{r.Line}", (r, ctx) =>
        {
            var seq = r.Sequence;
            if (seq.Length > length)
            {
                int start = o.Split == Split.Pretrain ? ctx.Random().Next(seq.Length - length + 1) : 0;
                seq = seq.Substring(start, length);
            }
            var label = Label(r) is { } l ? map[l] : -1;
            return Sample.Tokens(Encode(seq, alphabet, length, pad), label);
        });
    }

    /// <summary>
    /// DABS protein CSVs (TAPE tasks): pfam/pfam_pretrain_train.csv (primary, clan), pfam/pfam_transfer.csv, and
    /// pfam/transfer/{remote_homology,secondary_structure,stability,fluorescence}_{train,valid}.csv.
    /// </summary>
    public static IDataset ProteinCsv(DatasetSpec spec, ReaderOptions o, string task)
    {
        const string layout = "pfam/{pfam_pretrain_train.csv, pfam_transfer.csv, transfer/TASK_{train,valid}.csv} (DABS)";
        string path = task switch
        {
            "pfam" => Path.Combine(o.Root, "pfam", o.Split == Split.Pretrain ? "pfam_pretrain_train.csv" : "pfam_transfer.csv"),
            _ => Path.Combine(o.Root, "pfam", "transfer", $"{task}_{(o.Training ? "train" : "valid")}.csv"),
        };
        var table = CsvTable.Read(Layout.File(path, layout));
        int primary = table.Column("primary");
        var rows = task == "pfam" && o.Split != Split.Pretrain ? Layout.SplitShuffled(table.Rows, o.Split, 0.9) : table.Rows;
        Func<CsvRow, float[]> label;
        switch (task)
        {
            case "pfam":
                var clans = o.Split != Split.Pretrain && File.Exists(Path.Combine(o.Root, "pfam", "pfam_pretrain_train.csv"))
                    ? CsvTable.Read(Path.Combine(o.Root, "pfam", "pfam_pretrain_train.csv")) : table;
                var clanMap = Layout.LabelMap(clans.Rows.Select(r => r.Fields[clans.Column("clan")]));
                int clan = table.Column("clan");
                label = r => [clanMap[r.Fields[clan]]];
                break;
            case "remote_homology":
                int fold = table.Column("fold_label");
                label = r => [int.Parse(r.Fields[fold], CultureInfo.InvariantCulture)];
                break;
            case "secondary_structure":
                int ss3 = table.Column("ss3");
                label = r =>
                {
                    var parts = r.Fields[ss3].Trim('[', ']', ' ').Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
                    var tags = new float[spec.LabelsPerSample];
                    for (int i = 0; i < tags.Length; i++) tags[i] = i < parts.Length ? int.Parse(parts[i], CultureInfo.InvariantCulture) : 3;
                    return tags;
                };
                break;
            case "stability" or "fluorescence":
                int score = table.Column(task == "stability" ? "stability_score" : "log_fluorescence");
                label = r => [float.Parse(r.Fields[score].Trim('[', ']', ' '), CultureInfo.InvariantCulture)];
                break;
            default:
                throw new ArgumentException($"unknown protein task '{task}'");
        }
        return new ListDataset<CsvRow>(spec, rows, r => $"{path}:{r.Line}", (r, _) =>
            new Sample(null, Encode(r.Fields[primary], AminoAcids, spec.Shape[^1], 'X'), label(r)));
    }

    /// <summary>An id,label,sequence CSV of proteins (the enzyme-class set), seeded stratified 80/20 split.</summary>
    public static IDataset LabelledProteinCsv(DatasetSpec spec, ReaderOptions o, string file)
    {
        var path = Layout.File(Path.Combine(o.Root, file), $"{file}: CSV with columns id,label,sequence");
        var table = CsvTable.Read(path);
        int labelAt = table.Column("label"), seqAt = table.Column("sequence");
        var map = Layout.LabelMap(table.Rows.Where(r => r.Fields.Length > labelAt).Select(r => r.Fields[labelAt]));
        var rows = Layout.SplitStratified(table.Rows, r => r.Fields.Length > labelAt ? r.Fields[labelAt] : null, o.Split, 0.8);
        return new ListDataset<CsvRow>(spec, rows, r => $"{path}:{r.Line}", (r, _) =>
        {
            if (r.Fields.Length != table.Header.Length) throw new FormatException($"{r.Fields.Length} fields, the header has {table.Header.Length}");
            return Sample.Tokens(Encode(r.Fields[seqAt], AminoAcids, spec.Shape[^1], 'X'), map[r.Fields[labelAt]]);
        });
    }

    /// <summary>
    /// Text as UTF-8 bytes: id = byte + 1, 0 pads; vocabulary 257. A byte-level vocabulary needs no training data
    /// and never meets an unknown token; invalid UTF-8 in the file makes its record bad.
    /// </summary>
    public static long[] EncodeBytes(string text, int length)
    {
        if (text.Contains('\uFFFD')) throw new FormatException("text is not valid UTF-8");
        var bytes = Encoding.UTF8.GetBytes(text);
        var ids = new long[length];
        for (int i = 0; i < Math.Min(length, bytes.Length); i++) ids[i] = bytes[i] + 1;
        return ids;
    }

    /// <summary>Brown corpus sentences (genre,doc,sentence): label = genre; split by document so no document is in both.</summary>
    public static IDataset BrownSentences(DatasetSpec spec, ReaderOptions o, string file)
    {
        var path = Layout.File(Path.Combine(o.Root, file), $"{file}: CSV with columns genre,doc,sentence");
        var table = CsvTable.Read(path);
        int genre = table.Column("genre"), doc = table.Column("doc"), sentence = table.Column("sentence");
        var map = Layout.LabelMap(table.Rows.Where(r => r.Fields.Length > genre).Select(r => r.Fields[genre]));
        var testDocs = table.Rows.Where(r => r.Fields.Length > doc).Select(r => r.Fields[doc]).Distinct()
            .Where(d => DecodeContext.Mix(42, 0, Fnv(d)) % 5 == 0).ToHashSet();
        var rows = table.Rows.Where(r => r.Fields.Length > doc && testDocs.Contains(r.Fields[doc]) == (o.Split == Split.Test)).ToList();
        return new ListDataset<CsvRow>(spec, rows, r => $"{path}:{r.Line}", (r, _) =>
        {
            if (r.Fields.Length != table.Header.Length) throw new FormatException($"{r.Fields.Length} fields, the header has {table.Header.Length}");
            return Sample.Tokens(EncodeBytes(r.Fields[sentence], spec.Shape[^1]), map[r.Fields[genre]]);
        });
    }

    /// <summary>FNV-1a of a string: a hash that is the same in every process (string.GetHashCode is not).</summary>
    public static long Fnv(string s)
    {
        ulong h = 14695981039346656037UL;
        foreach (var c in s) h = unchecked((h ^ c) * 1099511628211UL);
        return unchecked((long)h);
    }
}
