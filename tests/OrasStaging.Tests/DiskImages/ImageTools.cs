using System.Diagnostics;
using System.Text.Json;

namespace OrasStaging.Tests.DiskImages;

/// <summary>External tools the disk-image tests verify with (qemu-img) or make inputs with (gzip, zstd, xz, bzip2).</summary>
internal static class ImageTools
{
    /// <summary>Resolved once, so tests that empty PATH can still verify with it afterwards.</summary>
    public static readonly string QemuImg = Which("qemu-img") ?? throw new InvalidOperationException(
        "qemu-img is required to verify images (apt-get install qemu-utils).");

    public static string? Which(string name)
    {
        foreach (string dir in (Environment.GetEnvironmentVariable("PATH") ?? string.Empty).Split(Path.PathSeparator))
        {
            string candidate = Path.Combine(dir, name);
            if (dir.Length > 0 && File.Exists(candidate))
            {
                return candidate;
            }
        }

        return null;
    }

    public static (int ExitCode, string Output) Run(string file, params string[] args)
    {
        var start = new ProcessStartInfo(file) { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (string a in args)
        {
            start.ArgumentList.Add(a);
        }

        using var p = Process.Start(start)!;
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        if (!p.WaitForExit(120_000))
        {
            p.Kill(true);
            throw new TimeoutException($"{file} {string.Join(' ', args)} did not finish in 120 s.");
        }

        return (p.ExitCode, stdout.Result + stderr.Result);
    }

    /// <summary>Compresses with the CLI: <c>tool -c args input &gt; output</c>.</summary>
    public static void Compress(string tool, string input, string output, params string[] extra)
    {
        var start = new ProcessStartInfo(tool) { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (string a in extra)
        {
            start.ArgumentList.Add(a);
        }

        start.ArgumentList.Add("-c");
        start.ArgumentList.Add(input);
        using var p = Process.Start(start)!;
        using (var file = File.Create(output))
        {
            var err = p.StandardError.ReadToEndAsync();
            p.StandardOutput.BaseStream.CopyTo(file);
            if (!p.WaitForExit(120_000))
            {
                p.Kill(true);
                throw new TimeoutException($"{tool} did not finish.");
            }

            Assert.True(p.ExitCode == 0, $"{tool} failed: {err.Result}");
        }
    }

    public static void AssertIdentical(string rawInput, string image, string format)
    {
        var (code, output) = Run(QemuImg, "compare", "-f", "raw", "-F", format, rawInput, image);
        Assert.True(code == 0, $"qemu-img compare: exit {code}: {output}");
        Assert.Contains("Images are identical", output);
    }

    public static void AssertCheckClean(string qcow2)
    {
        var (code, output) = Run(QemuImg, "check", "-f", "qcow2", qcow2);
        Assert.True(code == 0, $"qemu-img check: exit {code}: {output}");
        Assert.Contains("No errors were found", output);
        Assert.DoesNotContain("leaked", output, StringComparison.OrdinalIgnoreCase);
    }

    public static long VirtualSize(string image, string format)
    {
        var (code, output) = Run(QemuImg, "info", "--output=json", "-f", format, image);
        Assert.True(code == 0, $"qemu-img info: exit {code}: {output}");
        using var doc = JsonDocument.Parse(output);
        return doc.RootElement.GetProperty("virtual-size").GetInt64();
    }
}

/// <summary>A temporary folder removed at the end of the test.</summary>
internal sealed class TempDir : IDisposable
{
    public TempDir()
    {
        Path = System.IO.Path.Combine(System.IO.Path.GetTempPath(), "oras-disk-" + Guid.NewGuid().ToString("N")[..12]);
        Directory.CreateDirectory(Path);
    }

    public string Path { get; }

    public string File(string name) => System.IO.Path.Combine(Path, name);

    public void Dispose()
    {
        try
        {
            Directory.Delete(Path, recursive: true);
        }
        catch (IOException)
        {
        }
    }
}
