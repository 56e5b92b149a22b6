using System.Globalization;
using MetaMae.Model.Checkpoints;

namespace MetaMae.Actors.Checkpoints;

/// <summary>
/// The checkpoints of one run directory (RUN/checkpoints/step-NNNNNNNN): finds the latest valid one, skipping (with a
/// warning naming it) any that fails its manifest, and prunes old ones, keeping the last N, the step-0 (random
/// initialisation) one, and the best by probe metric.
/// </summary>
public sealed class CheckpointStore(string runDirectory, int keep, Action<string>? warn = null)
{
    public string Directory { get; } = Path.Combine(runDirectory, "checkpoints");

    public static string Name(long step) => $"step-{step:D8}";

    public string PathFor(long step) => Path.Combine(Directory, Name(step));

    /// <summary>Complete checkpoint directories (temporaries excluded), newest first.</summary>
    public IReadOnlyList<(long Step, string Path)> List()
    {
        if (!System.IO.Directory.Exists(Directory)) return [];
        return System.IO.Directory.GetDirectories(Directory)
            .Select(d => (Name: System.IO.Path.GetFileName(d), Path: d))
            .Where(d => d.Name.StartsWith("step-", StringComparison.Ordinal)
                        && long.TryParse(d.Name[5..], NumberStyles.None, CultureInfo.InvariantCulture, out _))
            .Select(d => (long.Parse(d.Name[5..], CultureInfo.InvariantCulture), d.Path))
            .OrderByDescending(d => d.Item1).ToList();
    }

    /// <summary>The newest checkpoint that passes its manifest; corrupt ones are reported and skipped.</summary>
    public (long Step, string Path, CheckpointMeta Meta)? LatestValid()
    {
        foreach (var (step, path) in List())
        {
            try
            {
                Checkpoint.Verify(path);
                return (step, path, Checkpoint.ReadMeta(path));
            }
            catch (CorruptCheckpointException e)
            {
                warn?.Invoke($"skipping checkpoint {path}: {e.Message}; using an earlier one");
            }
        }
        return null;
    }

    /// <summary>Deletes all but the newest <c>keep</c>, step 0, and <paramref name="best"/>.</summary>
    public void Prune(long? best)
    {
        var all = List();
        foreach (var (step, path) in all.Skip(keep))
        {
            if (step == 0 || step == best) continue;
            System.IO.Directory.Delete(path, recursive: true);
        }
    }
}
