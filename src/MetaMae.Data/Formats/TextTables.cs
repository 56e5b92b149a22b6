using System.Text;
using nietras.SeparatedValues;

namespace MetaMae.Data.Formats;

/// <summary>A listed record that is known to be unusable before decoding (the reason), or null.</summary>
public interface IRecordProblem
{
    string? Problem { get; }
}

/// <summary>A CSV row with its 1-based line number, for messages.</summary>
public sealed record CsvRow(int Line, string[] Fields) : IRecordProblem
{
    /// <summary>Invalid UTF-8 was decoded to U+FFFD; readers reject such rows as bad records.</summary>
    public bool HasInvalidText => Fields.Any(f => f.Contains('\uFFFD'));

    /// <summary>Why this row cannot be a record (a cut over-long line, invalid UTF-8), or null.</summary>
    public string? Problem => Fields.Any(f => f.Contains(LineLimitedReader.Marker))
        ? $"line longer than {CsvTable.MaxLineChars:N0} characters (the reader's limit): skipped"
        : HasInvalidText ? "invalid UTF-8 text" : null;
}

/// <summary>A CSV file read whole: header and rows. Quoting per RFC 4180 (Sep).</summary>
public sealed record CsvTable(string Path, string[] Header, List<CsvRow> Rows)
{
    /// <summary>Longest line a text reader passes whole (4 Mi characters); longer ones become one bad record each.</summary>
    public const int MaxLineChars = 4 * 1024 * 1024;

    public int Column(string name)
    {
        var i = Array.FindIndex(Header, h => string.Equals(h.Trim(), name, StringComparison.OrdinalIgnoreCase));
        return i >= 0 ? i : throw new FormatException($"{Path}: no column '{name}'; columns are {string.Join(", ", Header)}");
    }

    public static CsvTable Read(string path, bool hasHeader = true, char delimiter = ',')
    {
        if (!File.Exists(path)) throw new FileNotFoundException($"{path} not found", path);
        var rows = new List<CsvRow>();
        using var text = Open(path);
        using var reader = Sep.New(delimiter).Reader(o => o with
        {
            HasHeader = hasHeader, Unescape = true, DisableColCountCheck = true, DisableQuotesParsing = false,
        }).From(text);
        var header = hasHeader ? reader.Header.ColNames.ToArray() : [];
        foreach (var row in reader)
        {
            var fields = new string[row.ColCount];
            for (int i = 0; i < fields.Length; i++) fields[i] = row[i].ToString();
            // Sep 0.17 reports line 2 for the first row of a header-less file; every other row is right.
            rows.Add(new CsvRow(row.RowIndex == 0 ? 1 : row.LineNumberFrom, fields));
        }
        return new CsvTable(path, header, rows);
    }

    /// <summary>
    /// Text reader for plain or gzipped UTF-8 files. Invalid bytes become U+FFFD rather than failing the whole file,
    /// so the one bad record can be counted and skipped.
    /// </summary>
    public static LineLimitedReader Open(string path)
    {
        return new LineLimitedReader(new StreamReader(GzipFile.OpenRead(path), new UTF8Encoding(false, throwOnInvalidBytes: false),
            detectEncodingFromByteOrderMarks: true), CsvTable.MaxLineChars);
    }
}

/// <summary>A FASTA record: header line (without '&gt;'), sequence, and the line its header is on.</summary>
public sealed record FastaRecord(int Line, string Header, string Sequence) : IRecordProblem
{
    public string? Problem => Sequence.Contains(LineLimitedReader.Marker) || Header.Contains(LineLimitedReader.Marker)
        ? $"a line of this record is longer than {CsvTable.MaxLineChars:N0} characters (the reader's limit): skipped"
        : null;

    /// <summary>A key=value attribute of the header (e.g. class=ei), or null.</summary>
    public string? Attribute(string key)
    {
        foreach (var part in Header.Split([' ', '\t', '|', ';'], StringSplitOptions.RemoveEmptyEntries))
        {
            var eq = part.IndexOf('=');
            if (eq > 0 && part[..eq].Equals(key, StringComparison.OrdinalIgnoreCase)) return part[(eq + 1)..];
        }
        return null;
    }
}

public static class Fasta
{
    /// <summary>Reads a FASTA file (plain or .gz); sequences are joined across lines.</summary>
    public static List<FastaRecord> Read(string path)
    {
        if (!File.Exists(path)) throw new FileNotFoundException($"{path} not found", path);
        var records = new List<FastaRecord>();
        using var reader = CsvTable.Open(path);
        string? header = null;
        int headerLine = 0, lineNo = 0;
        var seq = new StringBuilder();
        for (var line = reader.ReadLine(); line is not null; line = reader.ReadLine())
        {
            lineNo++;
            if (line.StartsWith('>'))
            {
                if (header is not null) records.Add(new FastaRecord(headerLine, header, seq.ToString()));
                header = line[1..].Trim();
                headerLine = lineNo;
                seq.Clear();
            }
            else if (header is not null)
            {
                seq.Append(line.Trim());
            }
            else if (line.Trim().Length > 0)
            {
                throw new FormatException($"{path}:{lineNo}: sequence data before the first '>' header");
            }
        }
        if (header is not null) records.Add(new FastaRecord(headerLine, header, seq.ToString()));
        return records;
    }
}
