namespace MetaMae.Model.Tests;

/// <summary>Finds files the tests read: the repository's fixtures and ../shared beside it.</summary>
internal static class Fixtures
{
    public static string RepoRoot { get; } = FindRepoRoot();

    public static string Golden(string caseName) => Path.Combine(RepoRoot, "tests", "fixtures", "golden", caseName);

    private static string FindRepoRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
            if (File.Exists(Path.Combine(dir.FullName, "MetaMae.Actors.sln"))) return dir.FullName;
        throw new DirectoryNotFoundException($"no MetaMae.Actors.sln above {AppContext.BaseDirectory}");
    }
}
