using System.Text;
using System.Text.Json;

namespace MetaMae.Cli;

/// <summary>
/// Standard output for `--log-format json`: lines that are already JSON objects (the JSON console's) pass through; any
/// other line (a library writing to the console directly, Akka's stdout logger at shutdown) is wrapped into one, so a
/// log collector reads one JSON object per line whatever wrote it.
/// </summary>
public sealed class JsonLinesWriter(TextWriter inner) : TextWriter
{
    private readonly StringBuilder line = new();
    private readonly Lock gate = new();

    public override Encoding Encoding => inner.Encoding;

    public override void Write(char value)
    {
        lock (gate)
        {
            if (value == '\n') Flush(line.ToString().TrimEnd('\r'));
            else line.Append(value);
        }
    }

    public override void Write(string? value)
    {
        if (value is null) return;
        lock (gate)
            foreach (var c in value) Write(c);
    }

    private void Flush(string text)
    {
        line.Clear();
        if (text.Length == 0) return;
        if (text.StartsWith('{') && text.EndsWith('}')) inner.WriteLine(text);
        else if (AkkaLine.Match(text) is { Success: true } m)
            // Akka's stdout logger (before its loggers start, after they stop): its fields, as the structured logger writes them.
            inner.WriteLine(JsonSerializer.Serialize(new Dictionary<string, object>
            {
                ["Timestamp"] = DateTimeOffset.UtcNow.ToString("yyyy-MM-ddTHH:mm:ss.fffZ"), ["LogLevel"] = Levels[m.Groups["level"].Value],
                ["Category"] = "Akka", ["Message"] = m.Groups["message"].Value,
                ["State"] = new Dictionary<string, object> { ["Source"] = m.Groups["source"].Value, ["Thread"] = int.Parse(m.Groups["thread"].Value, System.Globalization.CultureInfo.InvariantCulture) },
            }));
        else
            inner.WriteLine(JsonSerializer.Serialize(new Dictionary<string, object>
            {
                ["Timestamp"] = DateTimeOffset.UtcNow.ToString("yyyy-MM-ddTHH:mm:ss.fffZ"), ["LogLevel"] = "Information", ["Category"] = "stdout",
                ["Message"] = text,
            }));
        inner.Flush();
    }

    /// <summary>"[INFO][12/06/2026 02:33:25.128Z][Thread 0005][akka://metamae/...] text", as Akka's stdout logger writes.</summary>
    private static readonly System.Text.RegularExpressions.Regex AkkaLine = new(
        @"^\[(?<level>DEBUG|INFO|WARNING|ERROR)\]\[[^\]]*\]\[Thread (?<thread>\d+)\]\[(?<source>[^\]]*)\] ?(?<message>.*)$",
        System.Text.RegularExpressions.RegexOptions.Singleline);

    private static readonly Dictionary<string, string> Levels = new()
    {
        ["DEBUG"] = "Debug", ["INFO"] = "Information", ["WARNING"] = "Warning", ["ERROR"] = "Error",
    };
}
