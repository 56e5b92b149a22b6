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
        else
            inner.WriteLine(JsonSerializer.Serialize(new Dictionary<string, object>
            {
                ["Timestamp"] = DateTimeOffset.UtcNow.ToString("yyyy-MM-ddTHH:mm:ss.fffZ"), ["LogLevel"] = "Information", ["Category"] = "stdout",
                ["Message"] = text,
            }));
        inner.Flush();
    }
}
