using System.Reflection;

namespace MetaMae.Data;

/// <summary>
/// Data shipped inside this assembly (a Fashion-MNIST subset, see Embedded/fashion-mnist/NOTICE.md), so a fresh machine
/// can run the main job with no download. A data root of "embedded" (or "embedded:NAME") resolves to a copy of the files
/// in a cache directory.
/// </summary>
public static class EmbeddedData
{
    public const string DefaultSet = "fashion-mnist";

    public static string Resolve(string root)
    {
        if (root == "embedded") return Extract(DefaultSet);
        if (root.StartsWith("embedded:", StringComparison.Ordinal)) return Extract(root["embedded:".Length..]);
        return root;
    }

    public static IReadOnlyList<string> Sets =>
        Assembly.GetManifestResourceNames().Select(n => n.Split('/')[1]).Distinct().ToList();

    private static Assembly Assembly => typeof(EmbeddedData).Assembly;

    public static string Extract(string set)
    {
        var names = Assembly.GetManifestResourceNames().Where(n => n.StartsWith($"embedded/{set}/", StringComparison.Ordinal)).ToList();
        if (names.Count == 0) throw new ArgumentException($"no embedded data set '{set}'; embedded: {string.Join(", ", Sets)}");
        var cache = Environment.GetEnvironmentVariable("XDG_CACHE_HOME") is { Length: > 0 } x ? x
            : Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".cache");
        var version = Assembly.ManifestModule.ModuleVersionId.ToString("N")[..12];
        var dir = Path.Combine(cache, "metamae", "embedded", $"{set}-{version}");
        if (Directory.Exists(dir)) return dir;
        var temp = dir + ".tmp-" + Guid.NewGuid().ToString("N");
        Directory.CreateDirectory(temp);
        foreach (var name in names)
        {
            using var resource = Assembly.GetManifestResourceStream(name)!;
            using var file = File.Create(Path.Combine(temp, name[$"embedded/{set}/".Length..]));
            resource.CopyTo(file);
        }
        try
        {
            Directory.Move(temp, dir);
        }
        catch (IOException) when (Directory.Exists(dir))
        {
            Directory.Delete(temp, recursive: true); // another process extracted it first
        }
        return dir;
    }
}
