using System.Diagnostics;
using System.Runtime.InteropServices;
using System.Text.Json;

namespace MetaMae.Actors.Runs;

/// <summary>Who holds a run directory: process id, host, when it took the lock, and its command line.</summary>
public sealed record RunOwner(int Pid, string Host, DateTimeOffset Since, string Command)
{
    public override string ToString() => $"pid {Pid} on host {Host} (since {Since:u})";

    public static RunOwner Current() => new(Environment.ProcessId, Environment.MachineName, DateTimeOffset.UtcNow,
        string.Join(' ', Environment.GetCommandLineArgs()));
}

/// <summary>Another live process owns the run directory.</summary>
public sealed class RunDirectoryBusyException(string directory, RunOwner? owner)
    : IOException($"run directory {directory} is in use by {owner?.ToString() ?? "another process"}; " +
                  "wait for it to end or stop it (Ctrl-C or SIGTERM) before resuming")
{
    public RunOwner? Owner { get; } = owner;
}

/// <summary>
/// RUN_DIR/run.lock: one live process owns a run directory. The lock is a Linux open-file-description lock
/// (fcntl F_OFD_SETLK) on that file, taken without waiting: it is atomic, held per open file (so two runs in one
/// process exclude each other too), and released by the kernel when the owner dies, even by SIGKILL; so a lock left by
/// a dead process is recognised as stale by construction. The file holds the owner as JSON for messages. Where OFD
/// locks are missing (not Linux), the file's pid is checked for liveness instead (same host only, not atomic).
/// </summary>
public sealed class RunDirectoryLock : IDisposable
{
    public const string FileName = "run.lock";

    private readonly FileStream file;
    private static readonly System.Collections.Concurrent.ConcurrentDictionary<string, RunDirectoryLock> Held = new();

    /// <summary>Names this lock within the process, so a message can hand it to the actor that runs the directory.</summary>
    public string Token { get; } = Guid.NewGuid().ToString("N");

    public string Directory { get; }
    /// <summary>The owner recorded by the previous holder, when it died without releasing (logged as taken over).</summary>
    public RunOwner? Previous { get; }

    private RunDirectoryLock(string directory, FileStream file, RunOwner? previous)
    {
        Directory = directory;
        this.file = file;
        Previous = previous;
        Held[Token] = this;
    }

    /// <summary>The lock of <paramref name="directory"/> this process holds under <paramref name="token"/>, or null.</summary>
    public static RunDirectoryLock? Adopt(string token, string directory) =>
        Held.TryGetValue(token, out var held) && held.Directory == Path.GetFullPath(directory) ? held : null;

    /// <summary>Takes the lock of <paramref name="directory"/> (created if missing) or throws <see cref="RunDirectoryBusyException"/>.</summary>
    public static RunDirectoryLock Acquire(string directory)
    {
        directory = Path.GetFullPath(directory);
        System.IO.Directory.CreateDirectory(directory);
        var path = Path.Combine(directory, FileName);
        var stream = new FileStream(path, FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.ReadWrite | FileShare.Delete);
        try
        {
            var previous = ReadOwner(stream);
            var me = RunOwner.Current();
            if (!TryLock(stream, previous, me)) throw new RunDirectoryBusyException(directory, previous);
            stream.SetLength(0);
            stream.Write(JsonSerializer.SerializeToUtf8Bytes(me));
            stream.Flush(flushToDisk: true);
            return new RunDirectoryLock(directory, stream, previous);
        }
        catch
        {
            stream.Dispose();
            throw;
        }
    }

    /// <summary>The owner written in <paramref name="directory"/>'s lock file, if any (it may be stale).</summary>
    public static RunOwner? Owner(string directory)
    {
        var path = Path.Combine(directory, FileName);
        if (!File.Exists(path)) return null;
        using var stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite | FileShare.Delete);
        return ReadOwner(stream);
    }

    private static RunOwner? ReadOwner(FileStream stream)
    {
        try
        {
            stream.Position = 0;
            var bytes = new byte[Math.Min(stream.Length, 64 * 1024)];
            stream.ReadExactly(bytes);
            stream.Position = 0;
            return bytes.Length == 0 ? null : JsonSerializer.Deserialize<RunOwner>(bytes);
        }
        catch (JsonException)
        {
            return null; // a lock file cut short by a crash: no owner to name
        }
    }

    private static bool TryLock(FileStream stream, RunOwner? previous, RunOwner me)
    {
        if (OperatingSystem.IsLinux())
        {
            var request = new Flock { Type = WriteLock, Whence = 0, Start = 0, Length = 0, Pid = 0 };
            if (Fcntl((int)stream.SafeFileHandle.DangerousGetHandle(), FOfdSetLk, ref request) == 0) return true;
            int errno = Marshal.GetLastPInvokeError();
            if (errno is EAgain or EAccess) return false;
            if (errno != EInvalid) throw new IOException($"could not lock {stream.Name}: errno {errno}");
        }
        // Fallback: a live process of this host named in the file owns it.
        if (previous is null || previous.Host != me.Host || previous.Pid == me.Pid) return true;
        try
        {
            using var p = Process.GetProcessById(previous.Pid);
            return p.HasExited;
        }
        catch (ArgumentException)
        {
            return true; // no such process: the lock is stale
        }
    }

    public void Dispose()
    {
        if (!Held.TryRemove(Token, out _)) return; // released already
        // Emptied on a clean release, so an owner found in the file later is one that died holding the lock.
        try
        {
            file.SetLength(0);
        }
        catch (IOException)
        {
            // a full or read-only disk: the stale owner text is harmless, the kernel lock goes with the file
        }
        file.Dispose(); // closing the file releases the OFD lock
    }

    private const int FOfdSetLk = 37, WriteLock = 1, EAgain = 11, EAccess = 13, EInvalid = 22;

    [StructLayout(LayoutKind.Sequential)]
    private struct Flock
    {
        public short Type;
        public short Whence;
        public long Start;
        public long Length;
        public int Pid;
    }

    [DllImport("libc", EntryPoint = "fcntl", SetLastError = true)]
    private static extern int Fcntl(int fd, int command, ref Flock request);
}
