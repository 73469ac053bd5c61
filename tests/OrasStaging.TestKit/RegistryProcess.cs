using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Text;

namespace OrasStaging.TestKit;

/// <summary>
/// One docker-registry (CNCF distribution 2.8) child process on 127.0.0.1, wrapped in a small sh watchdog
/// that kills the registry and removes the data directory when this process dies without cleaning up
/// (SIGKILL, crash): nothing is left running after a test run.
/// </summary>
internal sealed class RegistryProcess : IDisposable
{
    private readonly Process _process;

    private RegistryProcess(Process process, int port, string logPath)
    {
        _process = process;
        Port = port;
        LogPath = logPath;
    }

    public int Port { get; }
    public string LogPath { get; }
    /// <summary>The watchdog shell; killing its tree stops the registry.</summary>
    public int WatchdogPid => _process.Id;

    /// <summary>The docker-registry process itself (0 if unknown).</summary>
    public int Pid
    {
        get
        {
            try
            {
                return int.TryParse(File.ReadAllText(LogPath + ".pid").Trim(), out var pid) ? pid : 0;
            }
            catch (IOException)
            {
                return 0;
            }
        }
    }

    public static string FindBinary()
    {
        var fromEnv = Environment.GetEnvironmentVariable("ORASSTAGING_REGISTRY_BIN");
        if (!string.IsNullOrEmpty(fromEnv)) return fromEnv;
        foreach (var dir in (Environment.GetEnvironmentVariable("PATH") ?? "").Split(Path.PathSeparator).Append("/usr/bin"))
        {
            var candidate = Path.Combine(dir, "docker-registry");
            if (File.Exists(candidate)) return candidate;
        }
        throw new InvalidOperationException("docker-registry was not found. Run: sudo apt-get install -y docker-registry");
    }

    public static int FreePort()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        return ((IPEndPoint)listener.LocalEndpoint).Port;
    }

    /// <summary>Starts the registry with the config produced by <paramref name="configFor"/>(port) and waits until /v2/ answers.</summary>
    public static async Task<RegistryProcess> StartAsync(string dataDir, Func<int, string> configFor, HttpMessageInvoker probe, bool tls, TimeSpan timeout, CancellationToken cancellationToken)
    {
        var binary = FindBinary();
        Exception? last = null;
        // The port is free when we pick it but another process could take it before the registry binds: retry.
        for (int attempt = 1; attempt <= 3; attempt++)
        {
            int port = FreePort();
            var configPath = Path.Combine(dataDir, "config.yml");
            File.WriteAllText(configPath, configFor(port));
            var logPath = Path.Combine(dataDir, "registry.log");
            var psi = new ProcessStartInfo("/bin/sh")
            {
                UseShellExecute = false,
                RedirectStandardInput = true, // held open; the registry does not read it
                RedirectStandardOutput = false,
                RedirectStandardError = false,
            };
            psi.ArgumentList.Add("-c");
            psi.ArgumentList.Add(WatchdogScript);
            psi.ArgumentList.Add("testkit-registry");
            psi.ArgumentList.Add(binary);
            psi.ArgumentList.Add(configPath);
            psi.ArgumentList.Add(logPath);
            psi.ArgumentList.Add(Environment.ProcessId.ToString(System.Globalization.CultureInfo.InvariantCulture));
            psi.ArgumentList.Add(dataDir);
            psi.Environment["OTEL_TRACES_EXPORTER"] = "none";
            var process = Process.Start(psi) ?? throw new InvalidOperationException("could not start /bin/sh");
            var registry = new RegistryProcess(process, port, logPath);
            try
            {
                await registry.WaitReadyAsync(probe, tls, timeout, cancellationToken).ConfigureAwait(false);
                return registry;
            }
            catch (Exception ex) when (ex is not OperationCanceledException || !cancellationToken.IsCancellationRequested)
            {
                last = ex;
                registry.Dispose();
            }
        }
        throw new InvalidOperationException($"docker-registry did not start: {last?.Message}", last);
    }

    // $1 registry binary, $2 config, $3 log, $4 pid of the TestKit, $5 data dir to remove if the TestKit dies.
    private const string WatchdogScript = """
        "$1" serve "$2" >"$3" 2>&1 &
        r=$!
        echo "$r" >"$3.pid"
        while kill -0 "$4" 2>/dev/null && kill -0 "$r" 2>/dev/null; do sleep 1; done
        kill -9 "$r" 2>/dev/null
        wait "$r" 2>/dev/null
        if ! kill -0 "$4" 2>/dev/null; then rm -rf "$5"; fi
        """;

    private async Task WaitReadyAsync(HttpMessageInvoker probe, bool tls, TimeSpan timeout, CancellationToken cancellationToken)
    {
        var deadline = DateTime.UtcNow + timeout;
        var url = new Uri($"{(tls ? "https" : "http")}://127.0.0.1:{Port}/v2/");
        while (true)
        {
            cancellationToken.ThrowIfCancellationRequested();
            if (_process.HasExited)
            {
                throw new InvalidOperationException($"docker-registry exited: {ReadLog()}");
            }
            try
            {
                using var cts = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
                cts.CancelAfter(TimeSpan.FromSeconds(2));
                using var response = await probe.SendAsync(new HttpRequestMessage(HttpMethod.Get, url), cts.Token).ConfigureAwait(false);
                // 200 (anonymous) or 401 (auth) both mean the registry serves the API.
                if (response.StatusCode is HttpStatusCode.OK or HttpStatusCode.Unauthorized) return;
            }
            catch (HttpRequestException)
            {
            }
            catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
            {
            }
            if (DateTime.UtcNow > deadline)
            {
                throw new TimeoutException($"docker-registry did not answer on 127.0.0.1:{Port} within {timeout.TotalSeconds:0} s: {ReadLog()}");
            }
            await Task.Delay(100, cancellationToken).ConfigureAwait(false);
        }
    }

    /// <summary>Waits until a killed process is gone (or a zombie): callers may check right after disposal.</summary>
    private static void WaitGone(int pid, TimeSpan timeout)
    {
        if (pid <= 0 || !OperatingSystem.IsLinux()) return;
        var deadline = DateTime.UtcNow + timeout;
        while (DateTime.UtcNow < deadline)
        {
            try
            {
                var stat = File.ReadAllText($"/proc/{pid}/stat");
                var state = stat[(stat.LastIndexOf(')') + 2)..].TrimStart();
                if (state.StartsWith('Z') || state.StartsWith('X')) return;
            }
            catch (IOException)
            {
                return;
            }
            catch (UnauthorizedAccessException)
            {
                return;
            }
            Thread.Sleep(50);
        }
    }

    public string ReadLog()
    {
        try
        {
            using var stream = new FileStream(LogPath, FileMode.Open, FileAccess.Read, FileShare.ReadWrite);
            using var reader = new StreamReader(stream, Encoding.UTF8);
            var text = reader.ReadToEnd();
            return text.Length > 4000 ? text[^4000..] : text;
        }
        catch (IOException)
        {
            return "(no log)";
        }
    }

    public void Dispose()
    {
        var registryPid = Pid;
        try
        {
            if (!_process.HasExited)
            {
                _process.Kill(entireProcessTree: true);
                _process.WaitForExit(5000);
            }
            WaitGone(registryPid, TimeSpan.FromSeconds(5));
        }
        catch (InvalidOperationException)
        {
        }
        catch (System.ComponentModel.Win32Exception)
        {
        }
        _process.Dispose();
    }
}
