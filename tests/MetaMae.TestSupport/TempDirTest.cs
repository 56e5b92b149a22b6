namespace MetaMae.TestSupport;

/// <summary>
/// A spec with a temporary directory of its own, removed afterwards together with every process it started through
/// <see cref="ProcessRuns"/> that still runs (a spec that failed mid-run must not leave its processes behind).
/// </summary>
public abstract class TempDirTest(string prefix = "metamae-actors-") : IDisposable
{
    protected string Root { get; } = Directory.CreateTempSubdirectory(prefix).FullName;

    public void Dispose()
    {
        ProcessRuns.KillLeftovers();
        if (Directory.Exists(Root)) Directory.Delete(Root, recursive: true);
        GC.SuppressFinalize(this);
    }
}
