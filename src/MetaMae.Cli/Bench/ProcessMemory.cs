namespace MetaMae.Cli.Bench;

/// <summary>Resident memory of this process from /proc (Linux); falls back to the runtime's peak working set.</summary>
public static class ProcessMemory
{
    public static long PeakResidentBytes() => ReadStatusKb("VmHWM:") is { } kb ? kb * 1024 : Environment.WorkingSet;

    public static long ResidentBytes() => ReadStatusKb("VmRSS:") is { } kb ? kb * 1024 : Environment.WorkingSet;

    private static long? ReadStatusKb(string key)
    {
        const string status = "/proc/self/status";
        if (!File.Exists(status)) return null;
        foreach (var line in File.ReadLines(status))
            if (line.StartsWith(key, StringComparison.Ordinal))
                return long.Parse(line[key.Length..].Trim().Split(' ')[0]);
        return null;
    }
}
