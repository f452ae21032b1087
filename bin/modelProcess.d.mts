export declare const MODEL_COMMANDS: ReadonlySet<string>;
export declare function missingModelFlags(execArgv: readonly string[], nodeOptions?: string): string[];
export declare function modelProcessEnv(env: NodeJS.ProcessEnv): NodeJS.ProcessEnv | undefined;
