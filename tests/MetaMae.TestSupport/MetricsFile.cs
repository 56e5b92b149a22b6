using System.Text.Json;

namespace MetaMae.TestSupport;

/// <summary>A run directory's metrics.jsonl as specs read it, also while the run still writes it.</summary>
public static class MetricsFile
{
    /// <summary>The records of one kind ("step", "group", "replicas", "data", "evaluation"), in file order; a line cut short is skipped.</summary>
    public static List<JsonElement> Lines(string runDirectory, string kind)
    {
        var path = Path.Combine(runDirectory, "metrics.jsonl");
        if (!File.Exists(path)) return [];
        using var stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite);
        using var reader = new StreamReader(stream);
        var lines = new List<JsonElement>();
        var marker = $"\"kind\":\"{kind}\"";
        for (var line = reader.ReadLine(); line is not null; line = reader.ReadLine())
        {
            if (!line.Contains(marker, StringComparison.Ordinal)) continue;
            try
            {
                lines.Add(JsonDocument.Parse(line).RootElement);
            }
            catch (JsonException)
            {
                // the last line of a file still being written (or cut by a kill)
            }
        }
        return lines;
    }
}
