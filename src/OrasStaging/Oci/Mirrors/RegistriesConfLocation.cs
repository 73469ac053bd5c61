namespace OrasStaging.Oci.Mirrors;

/// <summary>
/// Which registries.conf files are read, and in which order, as the container engines choose them
/// (containers-registries.conf(5) and .d(5), and containers/image's sysregistriesv2):
/// <list type="bullet">
/// <item>an explicit file (<c>-RegistryConfigPath</c>, else <c>$CONTAINERS_REGISTRIES_CONF</c>) is the main file and must
/// exist; the system and then the user drop-in folders follow it;</item>
/// <item>else, when <c>~/.config/containers/registries.conf</c> exists, it is the main file and only the user drop-in
/// folder follows it;</item>
/// <item>else the system file (<c>/etc/containers/registries.conf</c>, on Windows <c>%ProgramData%\containers\registries.conf</c>)
/// is read if present, then the system and the user drop-in folders.</item>
/// </list>
/// In each folder only <c>*.conf</c> files are read, in ordinal order of their names; later settings override earlier ones.
/// </summary>
internal sealed record RegistriesConfLocation(string? MainFile, bool MainFileRequired, IReadOnlyList<string> DropInFolders)
{
    public const string EnvironmentVariable = "CONTAINERS_REGISTRIES_CONF";

    /// <summary>The files to read for this user; pure, so the rule can be tested without touching /etc.</summary>
    /// <param name="explicitPath">-RegistryConfigPath, or null.</param>
    /// <param name="environment">Environment lookup (CONTAINERS_REGISTRIES_CONF, ProgramData).</param>
    /// <param name="home">The user's home folder.</param>
    /// <param name="isWindows">Chooses %ProgramData% over /etc.</param>
    /// <param name="fileExists">File.Exists, injectable for tests.</param>
    public static RegistriesConfLocation For(
        string? explicitPath,
        Func<string, string?> environment,
        string home,
        bool isWindows,
        Func<string, bool> fileExists)
    {
        string systemRoot = isWindows
            ? Path.Combine(environment("ProgramData") is { Length: > 0 } data ? data : @"C:\ProgramData", "containers")
            : "/etc/containers";
        string systemFile = Path.Combine(systemRoot, "registries.conf");
        string systemFolder = Path.Combine(systemRoot, "registries.conf.d");
        string userRoot = Path.Combine(home, ".config", "containers");
        string userFile = Path.Combine(userRoot, "registries.conf");
        string userFolder = Path.Combine(userRoot, "registries.conf.d");

        string? chosen = !string.IsNullOrWhiteSpace(explicitPath) ? explicitPath
            : environment(EnvironmentVariable) is { Length: > 0 } fromEnvironment ? fromEnvironment
            : null;
        if (chosen is not null)
        {
            return new RegistriesConfLocation(chosen, true, new[] { systemFolder, userFolder });
        }

        if (fileExists(userFile))
        {
            return new RegistriesConfLocation(userFile, true, new[] { userFolder });
        }

        return new RegistriesConfLocation(systemFile, false, new[] { systemFolder, userFolder });
    }

    /// <summary>The files of this user and machine.</summary>
    public static RegistriesConfLocation ForCurrentUser(string? explicitPath) =>
        For(explicitPath, Environment.GetEnvironmentVariable,
            Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), OperatingSystem.IsWindows(), File.Exists);

    /// <summary>Reads and merges the files; a missing optional main file or drop-in folder reads as nothing.</summary>
    public RegistriesConf Load()
    {
        var conf = RegistriesConf.Empty;
        if (MainFile is not null && (MainFileRequired || File.Exists(MainFile)))
        {
            if (Directory.Exists(MainFile))
            {
                throw new OrasStagingException(ErrorCode.InvalidArgument, $"The registries config '{MainFile}' is a folder, not a file.",
                    "Give the path of registries.conf itself; drop-ins are read from registries.conf.d beside the system and user files.");
            }

            conf = RegistriesConfFile.Read(MainFile);
        }

        foreach (string file in DropInFiles())
        {
            conf = conf.OverlaidWith(RegistriesConfFile.Read(file));
        }

        return conf;
    }

    public IEnumerable<string> DropInFiles()
    {
        foreach (string folder in DropInFolders)
        {
            string[] files;
            try
            {
                files = Directory.Exists(folder)
                    ? Directory.GetFiles(folder, "*", new EnumerationOptions { RecurseSubdirectories = false, AttributesToSkip = 0, MatchType = MatchType.Simple })
                    : Array.Empty<string>();
            }
            catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
            {
                throw new OrasStagingException(ErrorCode.ConfigInvalid, $"Cannot list the registries drop-in folder '{folder}': {ex.Message}",
                    "Make the folder readable by this user.", ex);
            }

            // "*.conf" through the OS pattern would also match "x.conf~" on Windows (8.3 names); filter exactly.
            foreach (string file in files.Where(f => f.EndsWith(".conf", StringComparison.Ordinal))
                         .OrderBy(f => Path.GetFileName(f), StringComparer.Ordinal))
            {
                yield return file;
            }
        }
    }
}
