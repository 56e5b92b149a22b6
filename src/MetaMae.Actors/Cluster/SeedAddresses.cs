using System.Net;
using System.Net.Sockets;

namespace MetaMae.Actors.Cluster;

/// <summary>
/// A node answers only to the exact host it advertises: a message for akka.tcp://metamae@localhost:4053 arriving at a
/// node that calls itself 127.0.0.1:4053 is dropped as "non-local recipient", and the join waits until it times out.
/// A client therefore tries a seed under every name it goes by (the name given, the addresses it resolves to,
/// "localhost" for a loopback address), one at a time (two associations to one endpoint under two names at once
/// lose both), and joins the first that answers. When none answers, the diagnosis says why, naming each seed.
/// </summary>
internal static class SeedAddresses
{
    /// <summary>The names to try for one host:port seed, as given first: see <see cref="Names"/>.</summary>
    public static IReadOnlyList<string> Candidates(string seed) =>
        seed.Contains("://", StringComparison.Ordinal) || seed.Split(':') is not [var host, var port]
            ? [NodeOptions.SeedAddress(seed)]
            : Names(host).Select(h => NodeOptions.SeedAddress($"{h}:{port}")).ToList();

    /// <summary>The host as given, then the IPv4 addresses it resolves to, then "localhost" when it is a loopback address.</summary>
    private static List<string> Names(string host)
    {
        var names = new List<string> { host };
        IPAddress[] addresses;
        try
        {
            addresses = IPAddress.TryParse(host, out var ip) ? [ip] : Dns.GetHostAddresses(host);
        }
        catch (SocketException)
        {
            return names; // not resolvable (yet): the diagnosis says so if the join fails
        }
        foreach (var a in addresses.Where(a => a.AddressFamily == AddressFamily.InterNetwork)) names.Add(a.ToString());
        if (addresses.Any(IPAddress.IsLoopback)) names.Add("localhost");
        return names.Distinct(StringComparer.OrdinalIgnoreCase).ToList();
    }

    /// <summary>What stands between this node and each seed, for a join that did not complete: nothing listening, a name
    /// that does not resolve, or a node that listens but answers to another name.</summary>
    public static string Diagnose(IReadOnlyList<string> seeds, TimeSpan connectTimeout) => Survey(seeds, connectTimeout).Text;

    /// <summary>True when no seed can be reached at all (unresolvable, refused or silent): waiting longer will not help a client.</summary>
    public static bool NoneReachable(IReadOnlyList<string> seeds, TimeSpan connectTimeout) => Survey(seeds, connectTimeout).NoneReachable;

    /// <summary>Each seed probed once over TCP: whether none can be reached (a seed that is not host:port cannot be
    /// probed and counts as perhaps reachable) and, per seed, why the join may not have completed.</summary>
    public sealed record SeedSurvey(bool NoneReachable, string Text);

    public static SeedSurvey Survey(IReadOnlyList<string> seeds, TimeSpan connectTimeout)
    {
        var lines = new List<string>();
        bool noneReachable = true;
        foreach (var seed in seeds)
        {
            if (seed.Contains("://", StringComparison.Ordinal) || seed.Split(':') is not [var host, var portText] || !int.TryParse(portText, out var port))
            {
                lines.Add($"{seed}: not host:port");
                noneReachable = false;
                continue;
            }
            var reach = Probe(host, port, connectTimeout);
            noneReachable &= reach != Reach.Listening;
            lines.Add($"{seed}: " + reach switch
            {
                Reach.Unresolvable => $"the name '{host}' does not resolve",
                Reach.Refused => "nothing listens there (is the node up, and on that port?)",
                Reach.Silent => "no answer to a TCP connection (a firewall, or the wrong address)",
                _ => "a process listens there but no MetaMAE node answered to that address: a node answers only to the host it " +
                     "advertises (its --hostname, shown in its 'node up: akka.tcp://metamae@HOST:PORT' line); give that host:port",
            });
        }
        return new SeedSurvey(noneReachable, string.Join("; ", lines));
    }

    private enum Reach { Listening, Refused, Silent, Unresolvable }

    private static Reach Probe(string host, int port, TimeSpan timeout)
    {
        try
        {
            using var client = new TcpClient();
            return client.ConnectAsync(host, port).Wait(timeout) ? Reach.Listening : Reach.Silent;
        }
        catch (Exception e) when ((e as SocketException ?? e.InnerException as SocketException) is { } s)
        {
            return s.SocketErrorCode is SocketError.HostNotFound or SocketError.NoData or SocketError.TryAgain ? Reach.Unresolvable : Reach.Refused;
        }
    }
}
