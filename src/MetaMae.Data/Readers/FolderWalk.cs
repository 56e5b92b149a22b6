using System.Runtime.InteropServices;

namespace MetaMae.Data.Readers;

/// <summary>
/// The files of a data folder, each once: every folder and file is taken by its real path (symbolic links resolved),
/// a folder seen before (a link loop, a second link to it) is not walked again, a file seen before is not read again,
/// and no link is followed out of the folder. What was skipped is said, one line each (a data host logs them).
/// </summary>
public static class FolderWalk
{
    /// <summary>The wanted files under <paramref name="root"/> (in its sub-folders too when <paramref name="recurse"/>), in path order.</summary>
    public static List<string> Files(string root, Func<string, bool> wanted, bool recurse, ICollection<string> skipped)
    {
        var rootReal = Real(root);
        var folders = new HashSet<string>(StringComparer.Ordinal);
        var files = new HashSet<string>(StringComparer.Ordinal);
        var result = new List<string>();
        void Walk(string dir)
        {
            var real = Real(dir);
            if (!Inside(real, rootReal))
            {
                skipped.Add($"{dir}: a link out of {root} (to {real}), not followed");
                return;
            }
            if (!folders.Add(real))
            {
                skipped.Add($"{dir}: the folder {real} again (a link loop, or a second link to it), not walked twice");
                return;
            }
            foreach (var f in Directory.EnumerateFiles(dir).Order(StringComparer.Ordinal))
            {
                if (!wanted(f)) continue;
                var target = Real(f);
                if (!Inside(target, rootReal)) skipped.Add($"{f}: a link out of {root} (to {target}), not read");
                else if (!files.Add(target)) skipped.Add($"{f}: the file {target} again, read once");
                else result.Add(f);
            }
            if (recurse)
                foreach (var d in Directory.EnumerateDirectories(dir).Order(StringComparer.Ordinal)) Walk(d);
        }
        Walk(root);
        return result;
    }

    private static bool Inside(string path, string root) =>
        path == root || path.StartsWith(root.EndsWith('/') ? root : root + "/", StringComparison.Ordinal);

    /// <summary>The canonical path: every link of every component resolved (POSIX realpath); a dangling one as given.</summary>
    public static string Real(string path)
    {
        var full = Path.GetFullPath(path);
        if (OperatingSystem.IsWindows()) return full;
        var resolved = RealPath(full, IntPtr.Zero);
        if (resolved == IntPtr.Zero) return full;
        try
        {
            return Marshal.PtrToStringUTF8(resolved) ?? full;
        }
        finally
        {
            Free(resolved);
        }
    }

#pragma warning disable SYSLIB1054 // LibraryImport would need unsafe code in this project for two libc calls
    [DllImport("libc", EntryPoint = "realpath")]
    private static extern IntPtr RealPath([MarshalAs(UnmanagedType.LPUTF8Str)] string path, IntPtr resolved);

    [DllImport("libc", EntryPoint = "free")]
    private static extern void Free(IntPtr pointer);
#pragma warning restore SYSLIB1054
}
