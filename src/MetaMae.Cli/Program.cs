using System.CommandLine;
using MetaMae.Cli.Commands;

namespace MetaMae.Cli;

public static class Program
{
    public static int Main(string[] args)
    {
        var root = new RootCommand("metamae: modality-agnostic self-supervised pretraining (MetaMAE) on an Akka.NET pipeline.");
        foreach (var c in RunCommands.Create()) root.Add(c);
        root.Add(DataCommand.Create());
        root.Add(BenchCommand.Create());
        try
        {
            return root.Parse(args).Invoke(new InvocationConfiguration { EnableDefaultExceptionHandler = false });
        }
        catch (ArgumentException e)
        {
            Console.Error.WriteLine($"error: {e.Message}");
            return 2;
        }
        catch (Exception e) when (e is Data.DataLayoutException or FileNotFoundException or DirectoryNotFoundException
                                      or Model.Checkpoints.CorruptCheckpointException or FormatException)
        {
            Console.Error.WriteLine($"error: {e.Message}");
            return 2;
        }
    }
}
