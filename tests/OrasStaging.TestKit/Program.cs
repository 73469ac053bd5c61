using System.Text.Json;

namespace OrasStaging.TestKit;

public static class Program
{
    private const string Usage = """
        usage: dotnet OrasStaging.TestKit.dll <command> [options]
          generate-image --out PATH --size BYTES [--seed N] [--shape realistic|zeros|random] [--data-fraction F]
        """;

    public static int Main(string[] args)
    {
        if (args.Length == 0 || args[0] is "-h" or "--help" or "help")
        {
            Console.Error.WriteLine(Usage);
            return args.Length == 0 ? 2 : 0;
        }
        try
        {
            return args[0] switch
            {
                "generate-image" => GenerateImage(new Cli(args.Skip(1))),
                _ => throw new ArgumentException($"unknown command '{args[0]}'"),
            };
        }
        catch (ArgumentException ex)
        {
            Console.Error.WriteLine($"error: {ex.Message}");
            Console.Error.WriteLine(Usage);
            return 2;
        }
        catch (Exception ex)
        {
            Console.Error.WriteLine($"error: {ex}");
            return 1;
        }
    }

    internal static ImageShape ParseShape(string? text) => text?.ToLowerInvariant() switch
    {
        null or "realistic" => ImageShape.Realistic,
        "zeros" or "zero" or "allzero" => ImageShape.AllZero,
        "random" => ImageShape.Random,
        _ => throw new ArgumentException($"unknown shape '{text}' (realistic|zeros|random)"),
    };

    private static int GenerateImage(Cli cli)
    {
        var path = Path.GetFullPath(cli.Require("out"));
        var size = cli.GetLong("size", -1);
        if (size < 0) throw new ArgumentException("--size BYTES is required");
        var seed = (int)cli.GetLong("seed", 1);
        var shape = ParseShape(cli.Get("shape"));
        var fraction = cli.GetDouble("data-fraction", 0.33);
        cli.RejectUnknown();
        DiskImageGenerator.WriteFile(path, size, seed, shape, fraction);
        Console.WriteLine(JsonSerializer.Serialize(new Dictionary<string, object>
        {
            ["path"] = path,
            ["size"] = size,
            ["seed"] = seed,
            ["shape"] = shape.ToString(),
            ["dataFraction"] = fraction,
        }));
        return 0;
    }
}
