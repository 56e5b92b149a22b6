using System.Globalization;
using MetaMae.Model.Checkpoints;

namespace MetaMae.Actors.Checkpoints;

/// <summary>
/// The checkpoints of one run directory (RUN/checkpoints/step-NNNNNNNN): finds the latest valid one, skipping (with a
/// warning naming it) any that fails its manifest, and prunes old ones, keeping the last N, the step-0 (random
/// initialisation) one, and the best by probe metric.
/// </summary>
internal sealed class CheckpointStore(string runDirectory, int keep, Action<string>? warn = null)
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

    /// <summary>
    /// Deletes all but the newest <c>keep</c>, step 0, <paramref name="best"/> and every step in
    /// <paramref name="protect"/> (checkpoints a probe still has to read). Returns the steps deleted.
    /// </summary>
    public IReadOnlyList<long> Prune(long? best, IEnumerable<long>? protect = null)
    {
        Protocol.FailPoints.Hit("checkpoint.prune");
        var keepAlso = protect?.ToHashSet() ?? [];
        var deleted = new List<long>();
        foreach (var (step, path) in List().Skip(keep))
        {
            if (step == 0 || step == best || keepAlso.Contains(step)) continue;
            System.IO.Directory.Delete(path, recursive: true);
            deleted.Add(step);
        }
        return deleted;
    }

    /// <summary>
    /// Cleans what interrupted writes leave behind: temporary directories (.step-N.tmp-*) are deleted; a replaced
    /// checkpoint moved aside (.step-N.old-*) is put back when its replacement never arrived, else deleted. A file
    /// where a checkpoint directory belongs (step-N as a regular file) cannot be read and would block that step's write:
    /// it is moved to RUN/corrupt-checkpoints/, kept. Returns a line per action, for the log.
    /// </summary>
    public IReadOnlyList<string> CleanLeftovers()
    {
        var actions = new List<string>();
        if (!System.IO.Directory.Exists(Directory)) return actions;
        foreach (var dir in System.IO.Directory.GetDirectories(Directory, ".step-*"))
        {
            var name = System.IO.Path.GetFileName(dir);
            var target = System.IO.Path.Combine(Directory, name[1..name.IndexOf('.', 1)]);
            if (name.Contains(".old-", StringComparison.Ordinal) && !System.IO.Directory.Exists(target))
            {
                System.IO.Directory.Move(dir, target);
                actions.Add($"restored {target} from {name}, whose replacement was interrupted");
            }
            else
            {
                System.IO.Directory.Delete(dir, recursive: true);
                actions.Add($"removed {name}, left by an interrupted checkpoint write");
            }
        }
        foreach (var file in System.IO.Directory.GetFiles(Directory, "step-*"))
        {
            var aside = System.IO.Path.Combine(System.IO.Path.GetDirectoryName(Directory)!, "corrupt-checkpoints",
                DateTime.UtcNow.ToString("yyyyMMdd-HHmmss", CultureInfo.InvariantCulture));
            System.IO.Directory.CreateDirectory(aside);
            System.IO.File.Move(file, System.IO.Path.Combine(aside, System.IO.Path.GetFileName(file)));
            actions.Add($"moved {file} to {aside}: a file where a checkpoint directory belongs (unreadable, and it would block that step's write)");
        }
        return actions;
    }

    /// <summary>Moves every checkpoint to RUN/corrupt-checkpoints/ (kept for inspection) so a run can start over.</summary>
    public int MoveAllAside() => MoveAside(List(), "corrupt-checkpoints");

    /// <summary>Moves the checkpoints of steps after <paramref name="step"/> to RUN/<paramref name="folder"/>/TIME/ (kept, not deleted).</summary>
    public int MoveAsideAfter(long step, string folder) => MoveAside(List().Where(c => c.Step > step).ToList(), folder);

    private int MoveAside(IReadOnlyList<(long Step, string Path)> checkpoints, string folder)
    {
        if (checkpoints.Count == 0) return 0;
        var aside = System.IO.Path.Combine(System.IO.Path.GetDirectoryName(Directory)!, folder, DateTime.UtcNow.ToString("yyyyMMdd-HHmmss", CultureInfo.InvariantCulture));
        System.IO.Directory.CreateDirectory(aside);
        foreach (var (_, path) in checkpoints) System.IO.Directory.Move(path, System.IO.Path.Combine(aside, System.IO.Path.GetFileName(path)));
        return checkpoints.Count;
    }
}
