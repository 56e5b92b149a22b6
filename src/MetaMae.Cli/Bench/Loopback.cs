using System.Diagnostics;
using System.Net;
using System.Net.Sockets;

namespace MetaMae.Cli.Bench;

/// <summary>The physical anchor of the network benches: loopback ports and a plain TCP copy of the same bytes.</summary>
public static class Loopback
{
    public static int FreePort()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        return ((IPEndPoint)listener.LocalEndpoint).Port;
    }

    /// <summary>Length-prefixed copies of <paramref name="payload"/> over a loopback socket, read whole on the other side: MB/s.</summary>
    public static async Task<double> TcpCopy(byte[] payload, int count)
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        var port = ((IPEndPoint)listener.LocalEndpoint).Port;
        var reader = Task.Run(async () =>
        {
            using var server = await listener.AcceptTcpClientAsync();
            var stream = server.GetStream();
            var length = new byte[4];
            var buffer = new byte[payload.Length];
            long total = 0;
            for (int i = 0; i < count; i++)
            {
                await stream.ReadExactlyAsync(length);
                int n = BitConverter.ToInt32(length);
                await stream.ReadExactlyAsync(buffer.AsMemory(0, n));
                total += n;
            }
            return total;
        });
        var clock = Stopwatch.StartNew();
        using var client = new TcpClient();
        await client.ConnectAsync(IPAddress.Loopback, port);
        var output = client.GetStream();
        for (int i = 0; i < count; i++)
        {
            await output.WriteAsync(BitConverter.GetBytes(payload.Length));
            await output.WriteAsync(payload);
        }
        var received = await reader;
        return received / 1e6 / clock.Elapsed.TotalSeconds;
    }
}
