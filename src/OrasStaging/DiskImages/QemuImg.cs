using System.Diagnostics;
using System.Text;
using System.Text.Json;

namespace OrasStaging.DiskImages;

/// <summary>The bridge to qemu-img for the formats we do not read or write natively.</summary>
internal sealed class QemuImg
{
    public const string InstallHint =
        "Install qemu-img: 'sudo apt-get install qemu-utils' (Debian/Ubuntu), 'sudo dnf install qemu-img' (Fedora/RHEL), " +
        "'brew install qemu' (macOS), or on Windows the QEMU installer from https://qemu.org/download " +
        "('winget install SoftwareFreedomConservancy.QEMU'); or pass -QemuImgPath.";

    private QemuImg(string path) => Path = path;

    public string Path { get; }

    /// <summary>Finds qemu-img: the explicit path, else PATH (qemu-img.exe on Windows), else QEMU's default install folder.</summary>
    public static QemuImg Locate(string? explicitPath, string why)
    {
        if (!string.IsNullOrEmpty(explicitPath))
        {
            if (File.Exists(explicitPath))
            {
                return new QemuImg(System.IO.Path.GetFullPath(explicitPath));
            }

            throw new OrasStagingException(ErrorCode.QemuImgNotFound,
                $"qemu-img was not found at '{explicitPath}' ({why}).", InstallHint);
        }

        string exe = OperatingSystem.IsWindows() ? "qemu-img.exe" : "qemu-img";
        foreach (string dir in (Environment.GetEnvironmentVariable("PATH") ?? string.Empty).Split(System.IO.Path.PathSeparator))
        {
            if (dir.Length == 0)
            {
                continue;
            }

            string candidate = System.IO.Path.Combine(dir.Trim('"'), exe);
            if (File.Exists(candidate))
            {
                return new QemuImg(candidate);
            }
        }

        if (OperatingSystem.IsWindows())
        {
            string programFiles = Environment.GetFolderPath(Environment.SpecialFolder.ProgramFiles);
            string candidate = System.IO.Path.Combine(programFiles, "qemu", exe);
            if (File.Exists(candidate))
            {
                return new QemuImg(candidate);
            }
        }

        throw new OrasStagingException(ErrorCode.QemuImgNotFound,
            $"qemu-img is needed ({why}) but was not found on PATH.", InstallHint);
    }

    public static string FormatName(DiskImageFormat format) => format switch
    {
        DiskImageFormat.Qcow2 => "qcow2",
        DiskImageFormat.Raw => "raw",
        DiskImageFormat.Vhd => "vpc",
        DiskImageFormat.Vhdx => "vhdx",
        DiskImageFormat.Vmdk => "vmdk",
        DiskImageFormat.Vdi => "vdi",
        _ => throw new ArgumentOutOfRangeException(nameof(format)),
    };

    public static string FormatName(SourceFormat format) => format switch
    {
        SourceFormat.Qcow2 => "qcow2",
        SourceFormat.Raw => "raw",
        SourceFormat.VhdDynamic => "vpc",
        SourceFormat.Vhdx => "vhdx",
        SourceFormat.Vmdk => "vmdk",
        SourceFormat.Vdi => "vdi",
        _ => throw new ArgumentOutOfRangeException(nameof(format)),
    };

    public async Task<long> VirtualSizeAsync(string path, string format, CancellationToken ct)
    {
        string json = await RunAsync(new[] { "info", "--output=json", "-f", format, path }, ct).ConfigureAwait(false);
        using var doc = JsonDocument.Parse(json);
        return doc.RootElement.GetProperty("virtual-size").GetInt64();
    }

    /// <summary>Runs qemu-img; a non-zero exit is QemuImgFailed with its stderr. Cancelling kills it.</summary>
    public async Task<string> RunAsync(IReadOnlyList<string> arguments, CancellationToken ct)
    {
        var start = new ProcessStartInfo(Path)
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        foreach (string a in arguments)
        {
            start.ArgumentList.Add(a);
        }

        using var process = Process.Start(start)
            ?? throw new OrasStagingException(ErrorCode.QemuImgFailed, $"Could not start '{Path}'.");
        var stdout = process.StandardOutput.ReadToEndAsync(CancellationToken.None);
        var stderr = process.StandardError.ReadToEndAsync(CancellationToken.None);
        try
        {
            await process.WaitForExitAsync(ct).ConfigureAwait(false);
        }
        catch (OperationCanceledException)
        {
            try
            {
                process.Kill(entireProcessTree: true);
            }
            catch (InvalidOperationException)
            {
                // Already gone.
            }

            throw;
        }

        string output = await stdout.ConfigureAwait(false);
        string error = await stderr.ConfigureAwait(false);
        if (process.ExitCode != 0)
        {
            var command = new StringBuilder("qemu-img");
            foreach (string a in arguments)
            {
                command.Append(' ').Append(a);
            }

            throw new OrasStagingException(ErrorCode.QemuImgFailed,
                $"'{command}' failed with exit code {process.ExitCode}: {error.Trim()}",
                "Check that the input is a valid disk image of the format qemu-img reports.");
        }

        return output;
    }
}
